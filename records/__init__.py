"""The study: where finished combinations are recorded, and how processes sharing it split the work.

    storage  the run folder's journal file or a shared database, its claims lock, open_study
    ledger   claims, heartbeats and takeovers: every combination trained exactly once
"""
