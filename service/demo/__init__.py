"""`duban demo`: a realistic city on the simulation clock, with a chat inbox to watch."""
