import Diffusion
import Foundation
import XCTest
@testable import SDScript

/// `set spacing` and `set eta` say so when the sampler in use does not take them (as diffusers'
/// schedulers ignore them), and list the values they know; `set size N` is NxN.
final class SamplingSettingTests: XCTestCase {
    func testASettingTheSamplerIgnoresGetsANote() {
        let io = BufferIO()
        let session = makeSession(io: io)
        for line in ["set sampler ddim", "set spacing trailing", "set eta 0.5"] { XCTAssertEqual(session.execute(line), .ok, line) }
        XCTAssertEqual(io.lines, ["note: eta is TCD's gamma; the tcd sampler uses it, ddim does not"])
        io.lines = []
        for line in ["set sampler tcd", "set eta 0.5", "set spacing leading", "set sampler dpmpp-2m-karras", "set spacing linspace",
                     "set spacing model"] {
            XCTAssertEqual(session.execute(line), .ok, line)
        }
        XCTAssertEqual(io.lines, [
            "note: tcd sets its own timesteps whatever the spacing (as in diffusers); spacing changes the other samplers",
            "note: dpmpp-2m-karras sets its own timesteps whatever the spacing (as in diffusers); spacing changes the other samplers",
        ])
        guard case .failed(let diagnostic) = session.execute("set spacing trailng") else { return XCTFail("accepted trailng") }
        XCTAssertEqual(diagnostic.description, "set spacing: unknown spacing (model, linspace, leading, trailing): 'trailng' (did you mean 'trailing'?)")
    }

    /// `set size N` is NxN.
    func testOneNumberIsASquare() {
        let session = makeSession()
        XCTAssertEqual(session.execute("set size 768"), .ok)
        XCTAssertEqual(SettingKey.named("size")?.show(session.settings), "768x768")
    }
}
