from mcp_agentbus.cli import main

main()
