"""ComfyUI's API graph (the `prompt` text): every sampler with its settings, and the prompt
text traced back from its positive and negative inputs through any nodes.

A graph is {node id: {"class_type", "inputs"}}; an input is a literal or a link
[node id, output slot]. Samplers are KSampler-like nodes and SamplerCustom(Advanced), whose
settings may sit on the nodes they link to (guider, noise, sigmas, sampler). Tracing visits
each (node, branch) once: results are memoised, so many samplers sharing a subgraph cost no
more than one; it never passes through another sampler, follows at most MAX_GRAPH_DEPTH
links, and keeps at most MAX_PROMPT_PARTS texts a prompt. The flat columns come from the
sampler whose output reaches a save node without passing another sampler (the earliest in its
chain, if several outputs are saved), else from the last sampler that feeds no other.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

from forge_syncd.events.budget import MetadataProblem, Meter
from forge_syncd.events.formats.common import (
    GenerationInfo,
    load_json,
    lora,
    to_float,
    to_int,
    to_str,
    unique_loras,
)

Graph = dict[str, dict[str, Any]]
MAX_GRAPH_DEPTH = 64
MAX_PROMPT_PARTS = 64
MAX_SAMPLERS = 100  # entries kept in `samplers` (real graphs: a few)
TEXT_KEYS = ("text", "text_g", "text_l", "prompt", "clip_l", "clip_g", "t5xxl")
STRING_KEYS = ("populated_text", "text", "string", "value", "prompt")
JOINED_STRING_KEYS = ("text_a", "text_b", "text_c", "string_a", "string_b", "string_c")
NOT_CONDITIONING = frozenset(
    (
        "clip", "model", "vae", "clip_vision", "clip_vision_output", "image", "images",
        "pixels", "samples", "latent", "latent_image", "mask", "control_net", "noise",
        "sigmas", "sampler", "upscale_model", "style_model", "guider",
    )
)  # fmt: skip
NUMBER_KEYS = ("value", "seed", "noise_seed", "int", "float", "number")
CHECKPOINT_KEYS = ("ckpt_name", "unet_name", "model_name", "model_path")
OUTPUT_KINDS = ("VHS_VideoCombine",)  # and every class with "Save" in its name
Branch = str  # "all", "positive" or "negative"


def parse_graph(prompt_json: str, workflow_json: str | None, meter: Meter) -> GenerationInfo | None:
    """Given ComfyUI's `prompt` text (and `workflow`, kept as is), return every sampler in
    `samplers`; in the flat columns the prompts, denoise and VAE of the final sampler (whose
    output is saved), the seed, model, sampler and settings of the first stage on its latent
    path that adds noise (`_latent_chain`), and the LoRAs of every stage on that path; None
    (and a note on the meter) if it is not a graph.

    Time is linear in the graph's size. Raise BudgetExceeded if the CPU budget runs out.
    """
    meter.check("ComfyUI prompt")
    graph = load_graph(prompt_json, meter)
    if graph is None:
        return None
    info = GenerationInfo(generator="comfyui")
    samplers = sorted((key for key, node in graph.items() if is_sampler(node)), key=_order)
    if not samplers:
        return info
    tracer = _Tracer(graph, meter)
    final = _final_sampler(graph, samplers, tracer.users, meter)
    kept = samplers[:MAX_SAMPLERS]
    if final not in kept:
        kept.append(final)
    entries = {key: tracer.sampler(key) for key in kept}
    chain = _latent_chain(graph, final, set(samplers), meter)
    for key in chain:
        entries.setdefault(key, tracer.sampler(key))
    headline = next((key for key in reversed(chain) if entries[key]["seed"] is not None), final)
    info.samplers = [entries[key] for key in kept]
    chosen, saved = entries[headline], entries[final]
    info.seed, info.steps, info.cfg_scale = chosen["seed"], chosen["steps"], chosen["cfg"]
    info.sampler, info.scheduler = chosen["sampler_name"], chosen["scheduler"]
    info.model = chosen["model"]
    # LoRAs of every stage on the path (a hires pass may add some); what the saved image
    # shows (prompts, denoise, VAE) is described by the stage that made it.
    info.loras = unique_loras(
        [lora for key in reversed(chain) for lora in entries[key]["loras"] or ()]
    )
    info.prompt = saved["positive"] if saved["positive"] is not None else chosen["positive"]
    negative = saved["negative"] if saved["negative"] is not None else chosen["negative"]
    info.negative_prompt, info.denoise = negative, saved["denoise"]
    info.vae = tracer.vae(final)
    return info


# The latent a node mostly carries on: a sampler's input, a composite's canvas (not what is
# pasted on it), an upscale's or any other latent node's samples.
PRIMARY_LATENT = ("latent_image", "samples_to", "destination", "samples", "samples1", "latent")


def _latent_chain(graph: Graph, final: str, samplers: set[str], meter: Meter) -> list[str]:
    """Return the samplers on the primary latent path into `final`, from `final` back to the
    first stage (an SDXL refiner's base, a hires pass's first pass, a two-stage video
    model's high-noise stage, a composition's canvas). The headline seed, model and sampler
    are the first stage's that adds noise: a refiner or a low-noise stage adds none."""
    chain, key, seen = [final], final, {final}
    for _ in range(MAX_GRAPH_DEPTH):
        meter.tick("ComfyUI latent chain")
        inputs = inputs_of(graph[key])
        source = next(
            (link_id(graph, inputs[name]) for name in PRIMARY_LATENT if name in inputs), None
        )
        if source is None or source in seen:
            break
        seen.add(source)
        if source in samplers:
            chain.append(source)
        key = source
    return chain


def load_graph(prompt_json: str, meter: Meter) -> Graph | None:
    """Given the `prompt` text, return the graph {node id: node}, or None and a note."""
    graph = load_json(prompt_json, "ComfyUI prompt", meter)
    if graph is None:
        return None
    if not isinstance(graph, dict) or not all(isinstance(n, dict) for n in graph.values()):
        meter.note(MetadataProblem.MALFORMED, "ComfyUI prompt is not a graph of nodes")
        return None
    return graph


def is_sampler(node: dict[str, Any]) -> bool:
    """Return whether a node samples latents (KSampler, KSamplerAdvanced, SamplerCustom,
    SamplerCustomAdvanced, custom "...Sampler" nodes), not a sampler-name selector."""
    kind = node.get("class_type")
    if not isinstance(kind, str) or kind == "KSamplerSelect":
        return False
    named = "KSampler" in kind or kind.startswith("SamplerCustom") or kind.endswith("Sampler")
    inputs = inputs_of(node)
    return named and any(
        key in inputs for key in ("positive", "guider", "latent_image", "seed", "noise_seed")
    )


def is_output(node: dict[str, Any]) -> bool:
    """Return whether a node writes a file (SaveImage, SaveAnimatedWEBP, VHS_VideoCombine, ...)."""
    kind = node.get("class_type")
    return isinstance(kind, str) and ("Save" in kind or kind in OUTPUT_KINDS)


def inputs_of(node: dict[str, Any]) -> dict[str, Any]:
    """Return a node's inputs ({} if it has none or they are not an object)."""
    inputs = node.get("inputs")
    return inputs if isinstance(inputs, dict) else {}


def link_id(graph: Graph, link: Any) -> str | None:
    """Given an input value, return the id of the node it links to, if it is a link."""
    if isinstance(link, list) and link and isinstance(link[0], str | int):
        key = str(link[0])
        if key in graph:
            return key
    return None


def _slot(link: Any) -> int:
    return link[1] if len(link) > 1 and isinstance(link[1], int) else 0


def _order(key: str) -> tuple[int, str]:
    """Graph order: numeric ids by value ("9" before "10"), then others by text."""
    return (len(key), key)


def _final_sampler(
    graph: Graph, samplers: list[str], users: dict[str, list[str]], meter: Meter
) -> str:
    """Return the sampler whose output is saved: one walk back from every output node along
    the links, stopping at samplers; of the samplers reached, the first in graph order that is
    not fed by another of them (a second pass saved as well). Without outputs, the last
    sampler in graph order."""
    sampler_set = set(samplers)
    direct: set[str] = set()
    seen: set[str] = set()
    frontier = deque(key for key, node in graph.items() if is_output(node))
    seen.update(frontier)
    while frontier:
        key = frontier.popleft()
        meter.tick("ComfyUI outputs")
        for value in inputs_of(graph[key]).values():
            source = link_id(graph, value)
            if source is None or source in seen:
                continue
            seen.add(source)
            if source in sampler_set:
                direct.add(source)
            else:
                frontier.append(source)
    if not direct:
        return samplers[-1]
    ordered = [key for key in samplers if key in direct]
    fed = _downstream(ordered, users, meter)
    return next((key for key in ordered if key not in fed), ordered[0])


def _downstream(sources: list[str], users: dict[str, list[str]], meter: Meter) -> set[str]:
    """Return the nodes reached from `sources` along the links (within MAX_GRAPH_DEPTH), not
    counting a source unless another reaches it: one breadth-first walk from all at once."""
    reached: set[str] = set()
    frontier = deque((key, 0) for key in sources)
    while frontier:
        key, depth = frontier.popleft()
        meter.tick("ComfyUI sampler chain")
        if depth == MAX_GRAPH_DEPTH:
            continue
        for user in users.get(key, ()):
            if user not in reached:
                reached.add(user)
                frontier.append((user, depth + 1))
    return reached


class _Tracer:
    """One graph's memoised walks: prompt texts, model chains, literal values."""

    def __init__(self, graph: Graph, meter: Meter) -> None:
        self.graph = graph
        self.meter = meter
        self.texts: dict[tuple[str, Branch], tuple[str, ...]] = {}
        self.active: set[tuple[str, Branch]] = set()
        self.models: dict[str, tuple[str | None, tuple[dict[str, Any], ...]]] = {}
        self.users: dict[str, list[str]] = {}
        for key, node in graph.items():
            for value in inputs_of(node).values():
                source = link_id(graph, value)
                if source is not None:
                    self.users.setdefault(source, []).append(str(key))
                meter.tick("ComfyUI links")

    def node(self, link: Any) -> dict[str, Any] | None:
        key = link_id(self.graph, link)
        return None if key is None else self.graph[key]

    def sampler(self, key: str) -> dict[str, Any]:
        """Return one sampler's entry: its settings, model, LoRAs and traced prompts."""
        inputs = inputs_of(self.graph[key])
        guider = inputs_of(self.node(inputs.get("guider")) or {})
        noise = inputs_of(self.node(inputs.get("noise")) or {})
        sigmas = inputs_of(self.node(inputs.get("sigmas")) or {})
        chooser = inputs_of(self.node(inputs.get("sampler")) or {})
        both = {**sigmas, **chooser, **noise, **guider, **inputs}
        model, loras = self.model(both.get("model"))
        # KSamplerAdvanced and SamplerCustom ignore the seed when they add no noise.
        seed = to_int(self.literal(both.get("seed", both.get("noise_seed"))))
        positive = next((both[k] for k in ("positive", "conditioning", "cond1") if k in both), None)
        return {
            "node_id": key,
            "class_type": self.graph[key].get("class_type"),
            "seed": None if both.get("add_noise") in ("disable", False) else seed,
            "steps": to_int(self.literal(both.get("steps"))),
            "cfg": to_float(self.literal(both.get("cfg"))),
            "sampler_name": to_str(self.literal(both.get("sampler_name"))),
            "scheduler": to_str(self.literal(both.get("scheduler"))),
            "denoise": to_float(self.literal(both.get("denoise"))),
            "model": model,
            "loras": unique_loras(list(loras)),
            "positive": self.prompt(positive),
            "negative": self.prompt(both.get("negative")),
        }

    def literal(self, value: Any) -> Any:
        """Given an input value, return it, or the value a primitive node it links to holds."""
        for _ in range(8):
            node = self.node(value)
            if node is None:
                return value
            inputs = inputs_of(node)
            value = next((inputs[k] for k in NUMBER_KEYS + STRING_KEYS if k in inputs), None)
        return None

    def prompt(self, link: Any) -> str | None:
        """Given a conditioning input, return the texts it was encoded from, one a line."""
        parts = self._trace(link, 0)
        return "\n".join(parts) or None

    def _trace(self, link: Any, depth: int) -> tuple[str, ...]:
        key = link_id(self.graph, link)
        if key is None or depth > MAX_GRAPH_DEPTH:
            return ()
        node = self.graph[key]
        inputs = inputs_of(node)
        branch: Branch = "all"
        if "positive" in inputs and "negative" in inputs:
            branch = {0: "positive", 1: "negative"}.get(_slot(link), "all")
        memo = (key, branch)
        if memo in self.texts:
            return self.texts[memo]
        if memo in self.active or is_sampler(node) or is_output(node):
            return ()
        self.active.add(memo)
        self.meter.tick("ComfyUI prompt links")
        own = [self.string(inputs[k], depth + 1) for k in TEXT_KEYS if k in inputs]
        if any(own):
            parts = _merge([tuple(t.strip() for t in own if t and t.strip())])
        else:
            follow = [
                value
                for name, value in inputs.items()
                if name not in NOT_CONDITIONING and (branch == "all" or name == branch)
            ]
            parts = _merge(self._trace(value, depth + 1) for value in follow)
        self.active.discard(memo)
        self.texts[memo] = parts
        return parts

    def string(self, value: Any, depth: int) -> str | None:
        """Given a text input, return the string it holds or links to (through primitive,
        string and concatenation nodes)."""
        if isinstance(value, str):
            return value
        node = self.node(value)
        if node is None or depth > MAX_GRAPH_DEPTH or is_sampler(node):
            return None
        self.meter.tick("ComfyUI strings")
        inputs = inputs_of(node)
        for key in STRING_KEYS:
            if key in inputs:
                return self.string(inputs[key], depth + 1)
        pieces = [self.string(inputs[k], depth + 1) for k in JOINED_STRING_KEYS if k in inputs]
        return " ".join(p for p in pieces if p) or None

    def model(self, link: Any) -> tuple[str | None, tuple[dict[str, Any], ...]]:
        """Given a model input, return (checkpoint name, LoRAs on the way), memoised per
        node; at most MAX_GRAPH_DEPTH links are followed."""
        path: list[str] = []
        on_path: set[str] = set()
        key = link_id(self.graph, link)
        tail: tuple[str | None, tuple[dict[str, Any], ...]] = (None, ())
        while key is not None and len(path) < MAX_GRAPH_DEPTH and key not in on_path:
            if key in self.models:
                tail = self.models[key]
                break
            self.meter.tick("ComfyUI model chain")
            path.append(key)
            on_path.add(key)
            inputs = inputs_of(self.graph[key])
            if _checkpoint(inputs) is not None:
                break
            key = link_id(self.graph, inputs.get("model", inputs.get("model1")))
        for step in reversed(path):
            inputs = inputs_of(self.graph[step])
            own = tuple(item for item in _node_loras(inputs) if item is not None)
            name = _checkpoint(inputs)
            tail = (name, own) if name is not None else (tail[0], own + tail[1])
            self.models[step] = tail
        return tail

    def vae(self, sampler: str) -> str | None:
        """Return the VAE file a decoder of this sampler's output loads, if one does."""
        for user in self.users.get(sampler, ()):
            inputs = inputs_of(self.graph[user])
            loader = inputs_of(self.node(inputs.get("vae")) or {})
            name = to_str(loader.get("vae_name"))
            if name is not None:
                return name
        return None


def _checkpoint(inputs: dict[str, Any]) -> str | None:
    """The model file a loader node loads (`ckpt_name`, `unet_name`, ...), if it is one."""
    return next((str(inputs[k]) for k in CHECKPOINT_KEYS if isinstance(inputs.get(k), str)), None)


def _node_loras(inputs: dict[str, Any]) -> Iterable[dict[str, Any] | None]:
    """The LoRAs one node applies: LoraLoader(ModelOnly) and look-alikes (`lora_name`), and
    rgthree's Power Lora Loader (`lora_1`: {"on", "lora", "strength"})."""
    if "lora_name" in inputs:
        yield lora(inputs["lora_name"], inputs.get("strength_model", inputs.get("strength")))
    for value in inputs.values():
        if isinstance(value, dict) and "lora" in value and value.get("on", True) is not False:
            yield lora(value.get("lora"), value.get("strength"))


def _merge(groups: Iterable[tuple[str, ...]]) -> tuple[str, ...]:
    """Join text groups in order, without repeats, at most MAX_PROMPT_PARTS texts."""
    out: list[str] = []
    seen: set[str] = set()
    for group in groups:
        for text in group:
            if text not in seen and len(out) < MAX_PROMPT_PARTS:
                seen.add(text)
                out.append(text)
    return tuple(out)
