"""`agentbus demo`: a coordinator and worker agents, each worker a process of its own speaking MCP to one
bus, analyse a source tree in parallel and merge the findings into a report, while one worker crashes
mid-task so the lease expiry and retry can be seen."""
