"""The benchmark driver behind bench/run (see bench/README.md).

Starts the harness's PostgreSQL (postgres), seeds it, runs the app and the floor component on
devhost or another `up`-compatible runtime and the native baseline (servers), one server at a
time, drives each scenario (scenarios) with wrk (wrk), counts statements per request
(statements), measures notification latency with a webhook receiver of its own (receiver,
notifications) and a healthy subscriber alone and beside bad endpoints (isolation), and reports the figures against the targets (targets) as a table, JSON,
Markdown (report) and a chart (chart). The run itself is in run.

Standard library only, except matplotlib for the chart (bench/run installs it in a venv).
"""
