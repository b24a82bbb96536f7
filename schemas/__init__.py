"""The contracts between meterline's stages: event schemas, meters, rated rows, table DDL."""
