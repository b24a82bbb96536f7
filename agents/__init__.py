"""Collectors on the hypervisors and services, and the durable publisher that ships their samples."""
