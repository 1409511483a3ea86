/// What each setting does, in a line, for `help set KEY` (the values and the default come from the
/// key itself). `SettingKeyTests` checks that every key has one.
extension SettingKey {
    static let about: [String: String] = [
        "prompt": "what to draw, in A1111's syntax: (word:1.2) weights, [from:to:when] editing, AND, BREAK, <lora:NAME:M>",
        "negative": "what to steer away from (the negative prompt), in the prompt's syntax",
        "style": "a named style applied to the prompt and the negative prompt at each gen ('styles' lists them)",
        "seed": "the starting noise: the same seed and settings give the same picture; random draws one per gen, "
            + "last reuses the last image's",
        "steps": "how many denoising steps the sampler takes: more is slower; 20-30 suit most samplers, 4-8 the few-step LoRAs",
        "cfg": "guidance scale: how strictly the picture follows the prompt; 1 or less turns guidance off and halves the work",
        "size": "the picture's width and height (SD1.5 was trained at 512x512; much larger repeats subjects, "
            + "'set hires' is the way up)",
        "sampler": "the denoising method; A1111's names such as 'DPM++ 2M Karras' are taken too",
        "batch": "how many images each gen makes, with seeds s, s+1, ... (the text is encoded once)",
        "model": "the checkpoint; unset, discovery finds one ('models' lists what it finds, and which is in use)",
        "clip-skip": "stop the text encoder this many layers from its end (2 is what many anime models expect)",
        "preview": "draw images in the terminal: sixel where the terminal answers that it has it (auto), always, or never",
        "outdir": "where gen saves its images (PNG and JPEG with their recipe), made when missing",
        "memory": "low reads each layer's weights from the mapped file as it runs (under 1 GB); fast keeps the UNet's "
            + "in memory (about 2 GB) and saves their conversion each step; auto chooses by the free memory",
        "styles": "an A1111 styles.csv whose styles 'set style' takes beside the built-in ones",
        "jpeg-quality": "the saved JPEG's quality (the PNG beside it is lossless)",
        "autosave": "whether gen saves each image at once; off, 'save N' saves the ones you keep",
        "lora-dir": "the folder searched first for <lora:NAME> in a prompt",
        "embeddings": "the folder searched first for textual-inversion embeddings, used by writing their name in a prompt",
        "upscale-tile": "the side of the tiles 'upscale' runs its network over: smaller takes less memory, 0 takes none",
        "upscaler-dir": "the folder searched first for an ESRGAN-family upscaler named by 'upscale NAME' or 'set hires-upscaler'",
        "init": "start from this picture instead of noise (image-to-image); 'set strength' says how much is repainted",
        "strength": "image-to-image: how much of the init image is repainted (0.3 keeps the picture, 0.8 keeps its layout)",
        "mask": "inpainting: repaint only where the mask is white (with 'init')",
        "mask-blur": "inpainting: the mask's edge softened over this many pixels, as A1111's mask blur",
        "inpaint-paste": "inpainting: paste the original back outside the blurred mask, as A1111 does",
        "exif-rotate": "turn JPEG init images and masks upright as their EXIF orientation says",
        "vae-tiling": "decode (and encode) large images in overlapping tiles: less memory, slightly other pixels",
        "hires": "hires fix: a second img2img pass at a larger size (2, 1.5 or 1024x768), as A1111's",
        "hires-steps": "hires fix: the second pass's steps (0: as many as 'steps', as A1111)",
        "hires-strength": "hires fix: how much the second pass repaints (A1111's denoising strength)",
        "hires-upscaler": "hires fix: how the first picture is enlarged: in latent space, lanczos, or an ESRGAN model",
        "spacing": "where the sampler's timesteps fall (diffusers' timestep_spacing): the model's own, or trailing "
            + "for Hyper-SD and PCM",
        "eta": "TCD's gamma: how much fresh noise each step adds (0 is deterministic, 0.3 is TCD's default)",
        "deepcache": "DeepCache: run the whole UNet every N steps and reuse its deep features between (about 2x faster, "
            + "slightly other pictures)",
        "precision": "the matrix products' number format: fp32 matches diffusers; bf16 is faster on CPUs that have it",
        "mode": "draft renders with a few-step LoRA and TAESD in seconds; final with your own settings ('final N' re-renders)",
        "vae": "the decoder: the model's own, an A1111 VAE file or diffusers folder, or a TAESD for speed",
        "pickles": "read PyTorch pickles (.ckpt, .pt, .pth) as data without running them, or refuse them all",
    ]
}
