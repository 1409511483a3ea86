import Foundation
import TestSupport
import XCTest
@testable import NN

/// Files written by torch.save (`Tests/Fixtures/pickle`, made by `make_pickle_fixtures.py`; its
/// `manifest.json` has each file's Python line) read back to exactly the tensors torch holds:
/// `reference.safetensors` has each one `.contiguous()` in its stored dtype, and both files are
/// widened to Float32 exactly, so the comparison is of bit patterns (NaN payloads included).
final class TorchFileTests: XCTestCase {
    private func reference() throws -> SafetensorsFile { try Fixture.tensors("pickle/reference") }

    private func open(_ name: String) throws -> TorchFile {
        try TorchFile(url: Fixture.url("pickle/\(name)"), pickles: .read)
    }

    /// Every tensor of `file` equals `reference/<prefix>/<name>` in dtype, shape and bits.
    private func assertMatchesReference(_ file: TorchFile, prefix: String, file path: StaticString = #filePath, line: UInt = #line) throws {
        let reference = try reference()
        let expected = reference.names.filter { $0.hasPrefix(prefix + "/") }
        XCTAssertEqual(Set(file.names), Set(expected.map { String($0.dropFirst(prefix.count + 1)) }), file: path, line: line)
        for name in file.names {
            let ref = try XCTUnwrap(reference.info(prefix + "/" + name), file: path, line: line)
            let info = try XCTUnwrap(file.tensorInfo(name), file: path, line: line)
            XCTAssertEqual(info.dtype, ref.dtype, name, file: path, line: line)
            XCTAssertEqual(info.shape, ref.shape, name, file: path, line: line)
            let values = try file.tensor(name), expectedValues = try reference.tensor(ref.name)
            XCTAssertEqual(values.shape, ref.shape, name, file: path, line: line)
            XCTAssertEqual(values.data.map(\.bitPattern), expectedValues.data.map(\.bitPattern), name, file: path, line: line)
        }
    }

    /// `torch.save({'state_dict': sd, 'global_step': 5, 'epoch': 1, 'callbacks': {ModelCheckpoint: {...}}}, path)`:
    /// fp32, fp16 (subnormals, infinities, a NaN payload), bf16 and int64 tensors, a transposed view,
    /// a row slice at a storage offset, a strided column, a 0-dim and an empty tensor, a Parameter and
    /// a module's `state_dict()` (an OrderedDict whose `_metadata` the pickle sets with BUILD).
    func testAStateDictCheckpointReadsAsTorchHoldsIt() throws {
        let file = try open("state_dict.ckpt")
        XCTAssertEqual(file.archiveName, "state_dict")
        XCTAssertEqual(file.weightsPath, ["state_dict"])
        // In the pickle's order; global_step, epoch and the callbacks (keyed by Lightning's class) are not weights.
        XCTAssertEqual(file.names, ["f32", "f16", "bf16", "big", "rows", "column", "base", "transposed", "position_ids",
                                    "scalar", "empty", "param", "sub.weight", "sub.bias", "subnormal"])
        try assertMatchesReference(file, prefix: "state_dict")
        XCTAssertEqual(file.tensorInfo("transposed")?.shape, [5, 3])
        XCTAssertEqual(file.tensorInfo("rows")?.shape, [4, 4])
        XCTAssertEqual(file.tensorInfo("position_ids")?.dtype, .i64)
        XCTAssertEqual(file.tensorInfo("scalar")?.shape, [])
        XCTAssertEqual(file.tensorInfo("empty")?.elementCount, 0)
        XCTAssertTrue(file.skipped.isEmpty)
    }

    /// Fast mode's in-place view: the contiguous fp16 and bf16 tensors' own bytes, which widen to what
    /// `read` gives; none for fp32 or for a transposed view.
    func testContiguousHalfTensorsAreViewedInPlace() throws {
        let file = try open("state_dict.ckpt")
        for name in ["f16", "bf16", "base", "subnormal"] {
            let stored = try XCTUnwrap(file.storedHalfElements(name), name)
            let widened = (0..<stored.count).map { i in
                stored.isBF16 ? Float(bitPattern: UInt32(stored.bits[i]) << 16) : Float(Float16(bitPattern: stored.bits[i]))
            }
            XCTAssertEqual(stored.isBF16, name == "bf16", name)
            XCTAssertEqual(widened.map(\.bitPattern), try file.tensor(name).data.map(\.bitPattern), name)
        }
        for name in ["f32", "transposed", "position_ids", "empty"] {
            XCTAssertNil(file.storedHalfElements(name), name)
        }
    }

    /// The same state dict with `pickle_protocol=4` and `5` (STACK_GLOBAL, MEMOIZE, FRAME, SHORT_BINUNICODE).
    func testProtocolsFourAndFive() throws {
        for name in ["protocol4.pt", "protocol5.pt"] {
            let file = try open(name)
            XCTAssertEqual(file.weightsPath, [], name)
            XCTAssertEqual(file.names.count, 15, name)
            try assertMatchesReference(file, prefix: "state_dict")
        }
    }

    /// BasicSR's `{'params_ema': ema, 'params': params}`: the EMA weights are the ones read.
    func testParamsEmaIsPreferredOverParams() throws {
        let file = try open("params_ema.pth")
        XCTAssertEqual(file.weightsPath, ["params_ema"])
        XCTAssertEqual(file.names, ["conv_first.weight", "conv_first.bias"])
        try assertMatchesReference(file, prefix: "params_ema")
    }

    /// An A1111 textual-inversion `.pt`: the vectors under `string_to_param.*`; the ints and strings beside them are not tensors.
    func testAnA1111Embedding() throws {
        let file = try open("embedding.pt")
        XCTAssertEqual(file.names, ["string_to_param.*"])
        try assertMatchesReference(file, prefix: "embedding")
    }

    /// `torch.save({'state_dict': {...}, 'epoch': np.float64(1.0)})`: numpy's scalar is refused by name, as
    /// `torch.load(weights_only=True)` refuses it ("Unsupported global: GLOBAL numpy._core.multiarray.scalar").
    func testANumpyScalarIsRefusedAsTorchRefusesIt() throws {
        let url = Fixture.url("pickle/numpy_scalar.ckpt")
        let error = torchFileError { _ = try TorchFile(url: url, pickles: .read) }
        guard case let .refusedGlobal(path, opcode, global, _) = error else { return XCTFail("\(String(describing: error))") }
        XCTAssertEqual([path, opcode, global], [url.path, "GLOBAL", "numpy._core.multiarray.scalar"])
        XCTAssertTrue(error!.description.contains("nothing was run"), error!.description)
        XCTAssertFalse(error!.description.contains("\n"))
    }

    /// `openTensorFile` goes by the first bytes, not the name.
    func testTheOpenerDispatchesOnTheFirstBytes() throws {
        let dir = try makeWeightsTestDirectory(self)
        let pickleNamedSafetensors = dir.appendingPathComponent("really-a-pickle.safetensors")
        try FileManager.default.copyItem(at: Fixture.url("pickle/embedding.pt"), to: pickleNamedSafetensors)
        XCTAssertTrue(try openTensorFile(pickleNamedSafetensors, pickles: .read) is TorchFile)
        let safetensorsNamedCkpt = dir.appendingPathComponent("really-safetensors.ckpt")
        try FileManager.default.copyItem(at: Fixture.url("pickle/reference.safetensors"), to: safetensorsNamedCkpt)
        XCTAssertTrue(try openTensorFile(safetensorsNamedCkpt, pickles: .refuse) is SafetensorsFile)
        XCTAssertEqual(TensorFileKind.of(Fixture.url("pickle/state_dict.ckpt")), .torchZip)
        // Through a symbolic link, as a Hugging Face cache snapshot links to its blob.
        let link = dir.appendingPathComponent("link.ckpt")
        try FileManager.default.createSymbolicLink(at: link, withDestinationURL: safetensorsNamedCkpt)
        XCTAssertEqual(TensorFileKind.of(link), .safetensors)

        // A pickle outside the zip format is never parsed.
        var legacy = PickleBuilder()
        legacy.none(); legacy.stop()
        let raw = try writeTestFile(legacy.bytes, "legacy.pt", in: dir)
        XCTAssertEqual(torchFileError { _ = try openTensorFile(raw, pickles: .read) },
                       .notZipFormat(path: raw.path, evidence: "it starts with a pickle protocol 2 header"))
        let text = try writeTestFile(Array("(dp0\n.".utf8), "protocol0.bin", in: dir)
        XCTAssertEqual(torchFileError { _ = try openTensorFile(text, pickles: .read) },
                       .notZipFormat(path: text.path, evidence: "its name ends in .bin"))
        let missing = dir.appendingPathComponent("missing.ckpt")
        guard case .cannotOpen? = torchFileError({ _ = try openTensorFile(missing, pickles: .read) }) else { return XCTFail() }

        // Files that are something else by their first bytes say what they are, whatever their name.
        let png = try writeTestFile([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + [UInt8](repeating: 0, count: 24), "model.safetensors", in: dir)
        let lfs = try writeTestFile(Array("version https://git-lfs.github.com/spec/v1\noid sha256:4c8f\nsize 4265146304\n".utf8),
                                    "v1-5-pruned-emaonly.ckpt", in: dir)
        let html = try writeTestFile(Array("<!DOCTYPE html><html><body>Not found</body></html>".utf8), "lora.safetensors", in: dir)
        let note = try writeTestFile(Array("hello, I am not a checkpoint\n".utf8), "text.ckpt", in: dir)
        XCTAssertEqual(safetensorsError { _ = try openTensorFile(png) }, .notWeights(path: png.path, what: "a PNG image"))
        XCTAssertEqual(safetensorsError { _ = try openTensorFile(html) }?.description,
                       "\(html.path) is an HTML or XML page, not weights: a download saved a web page in its place; download the file again")
        XCTAssertEqual(safetensorsError { _ = try openTensorFile(lfs) }?.description,
                       "\(lfs.path) is a Git LFS pointer, not a weights file; the weights themselves were not downloaded: "
                       + "'git lfs pull' in its repository, or download the file again")
        XCTAssertEqual(safetensorsError { _ = try openTensorFile(note) }, .notWeights(path: note.path, what: "a text file"))
    }

    /// With pickles refused, a pickle is refused before any of it is parsed, naming how to allow it;
    /// safetensors files are unaffected.
    func testPicklesCanBeRefusedEntirely() throws {
        let url = Fixture.url("pickle/state_dict.ckpt")
        let error = torchFileError { _ = try openTensorFile(url, pickles: .refuse) }
        XCTAssertEqual(error, .picklesRefused(path: url.path))
        XCTAssertTrue(error!.description.contains("'set pickles on'"), error!.description)
        XCTAssertTrue(error!.description.contains("SDREPL_PICKLES=off"), error!.description)
        XCTAssertNoThrow(try openTensorFile(Fixture.url("pickle/reference.safetensors"), pickles: .refuse))
        XCTAssertEqual(PicklePolicy(word: "OFF"), .refuse)
        XCTAssertEqual(PicklePolicy(word: "on"), .read)
        XCTAssertNil(PicklePolicy(word: "maybe"))
    }

    func testReadingChecksTheNameAndTheBuffer() throws {
        let file = try open("state_dict.ckpt")
        XCTAssertEqual(torchFileError { _ = try file.tensor("nope") }, .noSuchTensor(path: file.url.path, tensor: "nope"))
        var small = [Float](repeating: 0, count: 3)
        XCTAssertEqual(torchFileError { try small.withUnsafeMutableBufferPointer { try file.read("f32", into: $0) } },
                       .bufferSizeMismatch(path: file.url.path, tensor: "f32", elements: 12, bufferCount: 3))
        // Dropping pages of a read tensor leaves it readable.
        let before = try file.tensor("big")
        file.releasePages(of: "big")
        XCTAssertEqual(try file.tensor("big"), before)
    }
}

/// Runs `body` and returns the `TorchFileError` it throws, failing the test if it throws nothing
/// or something else.
func torchFileError(_ body: () throws -> Void, file: StaticString = #filePath, line: UInt = #line) -> TorchFileError? {
    do {
        try body()
        XCTFail("expected a TorchFileError, but nothing was thrown", file: file, line: line)
    } catch let e as TorchFileError {
        return e
    } catch {
        XCTFail("expected a TorchFileError, got \(error)", file: file, line: line)
    }
    return nil
}
