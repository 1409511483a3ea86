import Foundation
import XCTest
@testable import SDScript

/// Live previews take SD1.x's TAESD from A1111's `VAE-taesd` folder, never another family's
/// (`taef1_decoder` and `taesdxl_decoder` sort before `taesd_decoder` but cannot decode SD1.x latents).
final class PreviewTAESDTests: XCTestCase {
    func testAnotherFamilysTAESDIsPassedOver() throws {
        let folder = TemporaryFolder()
        let model = folder.write("models/Stable-diffusion/m.safetensors", "")
        for name in ["taef1_decoder.safetensors", "taesdxl_decoder.safetensors"] {
            _ = folder.write("models/VAE-taesd/\(name)", "")
        }
        var settings = SessionSettings()
        settings.resources.model = model
        let session = makeSession()
        XCTAssertNil(session.generation.previewTAESD(settings.resources), "only other families' TAESDs: none for previews")
        let taesd = folder.write("models/VAE-taesd/taesd_decoder.safetensors", "")
        XCTAssertEqual(session.generation.previewTAESD(settings.resources)?.path, URL(fileURLWithPath: taesd).standardizedFileURL.path)
    }
}
