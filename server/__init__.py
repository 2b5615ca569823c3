"""xedge server side: the CLI, the process launcher, the packaged model store and the prefix-cache policies."""
