"""The main job and its stages, shared by the CLI and (later) the service."""
