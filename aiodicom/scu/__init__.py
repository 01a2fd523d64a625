"""Convenience SCU APIs over `aiodicom.connect()`, one module per service class:

- `aiodicom.scu.mpps`: Modality Performed Procedure Step (`MppsScu`, `in_progress`, `series_from_files`)
- `aiodicom.scu.commitment`: Storage Commitment Push Model (`CommitmentListener`, `commit`, `request_commitment`)
- `aiodicom.scu.printing`: Basic Print Management

Each imports only what it needs, so using one never loads the others.
"""
