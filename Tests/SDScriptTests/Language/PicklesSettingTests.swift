import Diffusion
import Foundation
import TestSupport
import XCTest
@testable import SDScript

/// `set pickles off|on`: the process's pickle policy, which every loader consults. The fixture
/// model's `.ckpt` (torch.save's file, rebuilt by `Fixture.tinySD15PickledCheckpoint`) is read when
/// pickles are on (and then refused by shape, as its safetensors twin is: a single file carries no
/// config, so the tiny model is read as SD1.5), and refused before it is parsed when they are off.
final class PicklesSettingTests: XCTestCase {
    private var saved = PicklePolicy.current

    override func setUp() { saved = PicklePolicy.current }
    override func tearDown() { PicklePolicy.current = saved }

    func testSetPicklesOffRefusesAPickledModelAndOnReadsIt() throws {
        let folder = TemporaryFolder()
        let ckpt = try Fixture.tinySD15PickledCheckpoint(in: URL(fileURLWithPath: folder.path)).path
        let io = BufferIO()
        let session = Session(components: Components(generatorLoader: PipelineLoader(), models: ModelStoreCatalog(),
                                                     styles: StyleBook(environment: [:]), saver: nil), io: io)
        XCTAssertEqual(session.execute("set pickles off"), .ok)
        XCTAssertEqual(PicklePolicy.current, .refuse)
        XCTAssertEqual(SettingKey.named("pickles")?.show(session.settings), "off")
        guard case .failed(let refused) = session.execute("model \(ckpt)") else { return XCTFail("a pickle was read with pickles off") }
        XCTAssertTrue(refused.description.contains("reading pickles is turned off"), refused.description)
        XCTAssertTrue(refused.description.contains("'set pickles on'"), refused.description)

        XCTAssertEqual(session.execute("set pickles on"), .ok)
        XCTAssertEqual(PicklePolicy.current, .read)
        guard case .failed(let read) = session.execute("model \(ckpt)") else { return XCTFail("the tiny model loaded without its config") }
        XCTAssertTrue(read.description.contains("has shape"), "read, then refused by shape as the safetensors twin is: \(read)")
        XCTAssertFalse(read.description.contains("pickle"), read.description)

        guard case .failed(let typo) = session.execute("set pickles of") else { return XCTFail("accepted 'of'") }
        XCTAssertTrue(typo.description.contains("expected on or off"), typo.description)
        XCTAssertEqual(session.execute("set pickles off"), .ok)
        XCTAssertEqual(session.execute("unset pickles"), .ok)
        XCTAssertEqual(PicklePolicy.current, PicklePolicy.environmentDefault)
    }
}
