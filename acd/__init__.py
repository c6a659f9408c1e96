"""Automatic call distribution: agents and their states, queues and strategies (the distributor
is pure), supervision, real-time and historical statistics, Erlang C staffing."""
