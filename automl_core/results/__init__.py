"""After the search: the winner, the test set, exports, prediction, the model card."""
