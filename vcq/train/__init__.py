"""Training loops of the pipeline, one per model, all in the same shape (see `vcq.train.common`)."""
