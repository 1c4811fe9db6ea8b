"""`python -m trainer caption`: caption files for a folder of images, by a captioning model
(BLIP-style image-to-text) or a booru tagger (the WD14 family, ONNX)."""
