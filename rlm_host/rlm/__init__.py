"""The RLM loop and its one channel: the loop, the prompts, the broker and what each
sub-call means, the model client, the embedded model.
"""
