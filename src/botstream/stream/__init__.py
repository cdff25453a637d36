"""The Faust layer: app factory, topics, tables, agents and web views."""
