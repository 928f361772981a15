"""The daemon: its lifecycle, the runners of its containers, discovery, scheduling, the
answers to control methods, metrics and notifications."""
