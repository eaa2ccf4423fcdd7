"""Item embeddings from a vision-language model: image + text, masked mean of the last hidden layer."""
