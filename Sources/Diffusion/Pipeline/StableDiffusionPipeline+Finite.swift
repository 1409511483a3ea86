import Foundation

/// Where NaN or infinite values showed up first, for the message that names the likely culprit:
/// a weight file holding NaN or ±∞ (a bad merge, a damaged download, an fp16 overflow) poisons every
/// activation after it, and Swift's conversion to 8-bit pixels would trap on them.
enum NonFiniteStage {
    case textEncoder
    case vaeEncoder
    case unet(step: Int, of: Int)
    /// The UNet's output was finite but the scheduler's step was not: its config's numbers.
    case sampler(step: Int, of: Int)
    /// `own`: the checkpoint's VAE rather than the one `set vae` chose.
    case decoder(own: Bool)
}

extension StableDiffusionPipeline {
    /// `tensor`, after checking that it holds no NaN or ±∞ (a pass over it: microseconds next to
    /// the model that made it).
    /// - Throws: `PipelineError.nonFinite` naming the stage and the files that may be broken.
    @discardableResult
    func finite(_ tensor: Tensor, _ stage: @autoclosure () -> NonFiniteStage) throws -> Tensor {
        guard tensor.isAllFinite else { throw PipelineError.nonFinite(nonFiniteMessage(stage())) }
        return tensor
    }

    func nonFiniteMessage(_ stage: NonFiniteStage) -> String {
        let model = checkpoint.location.path
        let loras = appliedLoRANames.map { "<lora:\($0)>" }.joined(separator: ", ")
        let withLoRAs = loras.isEmpty ? "" : " or of a LoRA in the prompt (\(loras))"
        let tryWithout = loras.isEmpty ? "try another model" : "try the prompt without its LoRAs, or another model"
        switch stage {
        case .textEncoder:
            return "the text encoder produced NaN or infinite values for this prompt: the text-encoder weights of \(model)\(withLoRAs), "
                + "or an embedding the prompt names, hold NaN or infinite values; \(tryWithout)"
        case .vaeEncoder:
            return "the VAE encoder produced NaN or infinite values from the starting image: the VAE weights of \(model) hold NaN or infinite values; try another model"
        case let .unet(step, total):
            return "the UNet produced NaN or infinite values at step \(step) of \(total): the UNet weights of \(model)\(withLoRAs) "
                + "hold NaN or infinite values; \(tryWithout)"
        case let .sampler(step, total):
            return "the sampler's latents became NaN or infinite at step \(step) of \(total) while the UNet's output was finite: "
                + "the scheduler config of \(model) (beta_start, beta_end, trained_betas) is out of range; try another sampler or model"
        case let .decoder(own):
            let file = own ? nil : decoderFile
            let what = file.map { "the \(decoder.decoderName) in \($0.path)" } ?? "the VAE of \(model)"
            let fix = file == nil ? "'set vae' another VAE file" : "'set vae none' goes back to the model's own"
            return "\(what) produced NaN or infinite pixels: its weights hold NaN or infinite values; \(fix)"
        }
    }
}
