"""The replica runtime: load one bundle, connect to the frontend, serve batches. Imports no
frontend or manager code."""
