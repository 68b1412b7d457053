"""exec_analytics: Foundry listExecutions into typed pandas DataFrames."""
