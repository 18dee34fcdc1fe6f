"""HTTP routes: parse, call one use case, answer with a response model."""
