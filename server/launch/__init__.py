"""Start, supervise and stop the processes of one xedge stack (vLLM + router)."""
