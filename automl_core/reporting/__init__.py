"""Reports: the live terminal view, a run read back, plots and the HTML page."""
