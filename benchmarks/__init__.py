"""Speed and memory figures measured against a peer in the same run (``make bench``)."""
