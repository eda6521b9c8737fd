"""An organisation's index: many repositories searched as one, built on Ray."""
