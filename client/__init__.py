"""rantai.client: the ledger format and everything needed to check it without trusting a node."""
