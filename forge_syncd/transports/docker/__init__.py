"""transport: docker (issue 27): a container reached through the Docker Engine API."""
