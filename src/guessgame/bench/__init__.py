"""`guessgame bench`: what each stage costs, measured against two minimal servers.

- loadgen.py: the load generator, an asyncio Protocol client in its own process.
- baselines.py: the two minimal servers every stage is compared with.
- runner.py: one cell = one server process, one load generator, one measured window.
- report.py: the table, the JSON and the plot.
- doc_tables.py: docs/performance.md's tables, generated from the committed JSON.
- command.py: the subcommand's arguments and the loop over cells.
"""
