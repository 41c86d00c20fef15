from mcp_agentbus.cli.main import main

main()
