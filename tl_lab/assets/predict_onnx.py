import json, sys

import numpy as np
import onnxruntime
from PIL import Image, ImageOps

model = sys.argv[1]                                       # digits.onnx, with digits.json beside it
info = json.load(open(model.removesuffix(".onnx") + ".json"))
pre, size = info["preprocessing"], info["preprocessing"]["size"]
session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
for path in sys.argv[2:]:
    image = Image.open(path).convert("RGBA")              # transparency on white, as in training
    image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image).convert("RGB")
    image = ImageOps.fit(image, (size, size), Image.Resampling.BICUBIC)  # short side to size, centre crop
    x = (np.asarray(image, np.float32) / 255 - pre["mean"]) / pre["std"]  # (size, size, 3), RGB
    x = x.transpose(2, 0, 1)[None].astype(np.float32)    # (1, 3, size, size)
    probs = session.run(None, {info["input"]["name"]: x})[0][0]
    top = int(probs.argmax())
    print(f"{path}: {info['classes'][top]} {probs[top]:.4f}")
