"""The central read API (``hacksky-edge api``): the original HackSky dashboard's endpoints."""
