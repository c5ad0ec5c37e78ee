"""Speech synthesis for corpora made up from text: the demo recipe's training data and the readers' test corpora."""
