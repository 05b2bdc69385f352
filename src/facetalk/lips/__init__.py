"""The lip model: speech -> mouth motion, learnt from real footage.

- features: log-mel of the speech, 100 rows a second (the model's input);
- targets: mouth opening and width from tracked landmarks (the training labels);
- augment: phone band, codecs, rooms and noise applied to training speech;
- prepare: a corpus of talking clips -> per-clip safetensors (`facetalk lipsync prepare`);
- data: prepared clips in memory, targets normalised per speaker;
- model: the model in numpy, whole files and streams alike; loading and its checks;
- train: the same network in torch, training, checkpoints, the model folder and its card;
- crossval: speaker-disjoint evaluation against the rule path and loudness;
- cli: `facetalk lipsync prepare|train|show`.
torch is imported by train (and cli's train command) only.
"""
