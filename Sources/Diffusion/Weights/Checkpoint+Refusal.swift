import Foundation

// Recognising the models a Checkpoint refuses (SD2.x, SDXL, InstructPix2Pix, LoRAs), by stored keys,
// model_index.json and shapes, so each is named instead of failing later at a missing tensor.
extension Checkpoint {
    /// SD2.x, SDXL and LoRA files by their keys.
    static func refuseByStoredKeys(_ file: any TensorFile) throws {
        let path = file.url.path
        let names = file.names
        if let key = names.first(where: { $0.hasPrefix("conditioner.embedders.") }) {
            throw CheckpointError.unsupportedModel(path: path, kind: "an SDXL checkpoint", evidence: "it has '\(key)'")
        }
        if let key = names.first(where: { $0.hasPrefix("cond_stage_model.model.") }) {
            throw CheckpointError.unsupportedModel(path: path, kind: "an SD 2.x checkpoint", evidence: "its text encoder is OpenCLIP ('\(key)')")
        }
        if let key = names.first(where: { $0.hasPrefix("model.diffusion_model.label_emb.") }) {
            throw CheckpointError.unsupportedModel(path: path, kind: "an SDXL or unCLIP checkpoint", evidence: "its UNet has a class embedding ('\(key)')")
        }
        if !names.contains(where: { $0.hasPrefix("model.diffusion_model.") }),
           let key = names.first(where: { $0.contains("lora_") || $0.contains(".lora.") }) {
            throw CheckpointError.unsupportedModel(path: path, kind: "a LoRA, not a full checkpoint", evidence: "it has '\(key)'")
        }
    }

    /// SDXL, InstructPix2Pix and upscaler pipelines by their `model_index.json`.
    static func refuseByModelIndex(_ folder: URL) throws {
        let indexURL = folder.appendingPathComponent("model_index.json")
        guard let data = FileManager.default.contents(atPath: indexURL.path) else { return }
        guard let index = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw CheckpointError.unknownLayout(path: folder.path, reason: "its model_index.json is not a JSON object (damaged, or an "
                                                + "interrupted download?): fetch it again")
        }
        let className = index["_class_name"] as? String ?? ""
        if index["text_encoder_2"] != nil || className.contains("XL") {
            throw CheckpointError.unsupportedModel(path: folder.path, kind: "an SDXL pipeline",
                                                   evidence: "model_index.json names \(className.isEmpty ? "a second text encoder" : className)")
        }
        if className.contains("InstructPix2Pix") || className.contains("Upscale") {
            throw CheckpointError.unsupportedModel(path: folder.path, kind: "a \(className)", evidence: "model_index.json says so")
        }
    }

    /// Non-SD1.x models by their shapes, in both layouts: the UNet's input channels, the
    /// cross-attention context width, the text encoder's width.
    static func refuseByShapes(_ shapes: [String: [Int]], path: String) throws {
        // 4 channels: text to image; 9: inpainting (the latents, the mask, the masked image's latents).
        if let convIn = shapes["unet.conv_in.weight"], convIn.count == 4, convIn[1] != 4, convIn[1] != 9 {
            let kind = convIn[1] == 8 ? "an InstructPix2Pix checkpoint" : "a UNet with \(convIn[1]) input channels"
            throw CheckpointError.unsupportedModel(path: path, kind: kind,
                                                   evidence: "its UNet's conv_in takes \(convIn[1]) channels, not 4 (text to image) or 9 (inpainting)")
        }
        // Only widths that identify a known other model are refused: tiny test models and configs
        // with other widths are SD1.x-shaped and their config.json decides.
        if let (key, shape) = shapes.first(where: { $0.key.hasPrefix("unet.") && $0.key.hasSuffix("attn2.to_k.weight") }),
           shape.count == 2, shape[1] == 1024 || shape[1] == 2048 {
            throw CheckpointError.unsupportedModel(path: path, kind: shape[1] == 1024 ? "an SD 2.x checkpoint" : "an SDXL checkpoint",
                                                   evidence: "its cross-attention takes \(shape[1])-wide text embeddings ('\(key)'), SD1.x's take 768")
        }
        if let norm = shapes["text_encoder.text_model.final_layer_norm.weight"], norm == [1024] || norm == [1280] {
            throw CheckpointError.unsupportedModel(path: path, kind: norm == [1024] ? "an SD 2.x checkpoint" : "an SDXL checkpoint",
                                                   evidence: "its text encoder is \(norm[0]) wide (OpenCLIP), SD1.x's CLIP ViT-L/14 is 768")
        }
    }
}
