"""Deployment: the compose file's process-level twin (`xedge up`) and the container entry points."""
