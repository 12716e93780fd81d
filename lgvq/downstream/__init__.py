"""Understanding on codes (Tables 8, 9, 11): small heads that read a frozen tokenizer's codes.

The tokenizer is frozen: a head sees only the code grid of each image and the codebook vectors
those codes index (`CodeFrontEnd`). Three heads share that front end:

captioning.py   ClipCap style: code vectors as a prefix of a GPT-2-architecture decoder
vqa.py          codes + question tokens through a GPT-2-architecture model; the last hidden
                state classifies over the answer vocabulary (COCO-QA protocol)
grounding.py    code features + expression tokens + a [REG] token in a transformer encoder;
                box regression with L1 + GIoU (TransVG style)
vocab.py        word vocabulary (captions, questions, expressions) and answer vocabulary
task.py         the `TrainTask` that plugs any head into the one training loop (lgvq.train.loop)
"""
