"""The web workspace (`cxloop web`): department heads see and act on their actions in a browser."""
