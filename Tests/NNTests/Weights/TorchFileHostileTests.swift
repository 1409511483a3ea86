import Foundation
import TestSupport
import XCTest
@testable import NN

/// One test per way a PyTorch pickle can be hostile or broken. Each builds the file byte by byte
/// (`ZipBuilder`, `PickleBuilder`), states the Python that would produce it where there is one, and
/// checks the exact typed error; the pickles that would run a command under CPython's unpickler
/// run `touch MARKER`, and the marker must not exist afterwards.
final class TorchFileHostileTests: XCTestCase {
    private var dir: URL!
    private var marker: URL!

    override func setUpWithError() throws {
        dir = try makeWeightsTestDirectory(self)
        marker = dir.appendingPathComponent("pwned")
    }

    override func tearDownWithError() throws {
        XCTAssertFalse(FileManager.default.fileExists(atPath: marker.path), "a pickle was executed")
    }

    /// Writes `bytes` as a file and returns the error opening it, with the path.
    private func openError(_ bytes: [UInt8], name: String = "t.ckpt", file: StaticString = #filePath, line: UInt = #line) throws -> (TorchFileError?, String) {
        let url = try writeTestFile(bytes, name, in: dir)
        return (torchFileError({ _ = try TorchFile(url: url, pickles: .read) }, file: file, line: line), url.path)
    }

    /// The error of an archive around `pickle`, with the storages given.
    private func pickleError(_ pickle: PickleBuilder, storages: [(key: String, bytes: [UInt8])] = [],
                             file: StaticString = #filePath, line: UInt = #line) throws -> (TorchFileError?, String) {
        try openError(torchArchive(pickle.bytes, storages: storages), file: file, line: line)
    }

    private func opened(_ pickle: PickleBuilder, storages: [(key: String, bytes: [UInt8])] = []) throws -> TorchFile {
        try opened(torchArchive(pickle.bytes, storages: storages))
    }

    private func opened(_ entries: [ZipBuilder.Entry]) throws -> TorchFile {
        try opened(ZipBuilder(entries).bytes)
    }

    private func opened(_ bytes: [UInt8]) throws -> TorchFile {
        let url = try writeTestFile(bytes, "ok.ckpt", in: dir)
        return try TorchFile(url: url, pickles: .read)
    }

    private var command: String { "touch \(marker.path)" }

    /// `{"w": tensor}` with a float32 storage of `numel` elements under key "0".
    private func stateDict(_ tensor: (inout PickleBuilder) -> Void) -> PickleBuilder {
        var p = PickleBuilder()
        p.emptyDict(); p.string("w")
        tensor(&p)
        p.setitem(); p.stop()
        return p
    }

    private func floats(_ n: Int) -> [UInt8] { [UInt8](repeating: 0, count: 4 * n) }

    // MARK: What would run code

    /// `pickle.dumps(Evil(), 2)` with `Evil.__reduce__ = lambda self: (os.system, ("touch MARKER",))`.
    func testGlobalAndReduceOfOsSystem() throws {
        var p = PickleBuilder()
        p.global("os", "system"); p.string(command); p.tuple1(); p.reduce(); p.stop()
        let (e, path) = try pickleError(p)
        XCTAssertEqual(e, .refusedGlobal(path: path, opcode: "GLOBAL", global: "os.system", offset: 2))
        XCTAssertTrue(e!.description.contains("refused GLOBAL os.system at byte 2"), e!.description)
        // CPython pickles os.system as posix.system on Linux.
        var posix = PickleBuilder()
        posix.global("posix", "system"); posix.string(command); posix.tuple1(); posix.reduce(); posix.stop()
        XCTAssertEqual(try pickleError(posix).0, .refusedGlobal(path: path, opcode: "GLOBAL", global: "posix.system", offset: 2))
    }

    /// `pickle.dumps(Evil(), 4)`: the global's names come from the stack.
    func testStackGlobal() throws {
        var p = PickleBuilder(protocol: 4)
        p.string("os"); p.string("system"); p.raw([0x93]); p.string(command); p.tuple1(); p.reduce(); p.stop()
        let (e, path) = try pickleError(p)
        XCTAssertEqual(e, .refusedGlobal(path: path, opcode: "STACK_GLOBAL", global: "os.system", offset: 2 + 7 + 11))
    }

    /// `BUILD` calls `__setstate__` (or updates `__dict__`) under CPython: here only a dictionary's
    /// attribute state is accepted, and dropped. Applied to an allowed class, or to a tensor, it is refused.
    func testBuildOnAnythingButADictionary() throws {
        var p = PickleBuilder()
        p.global("collections", "OrderedDict"); p.emptyDict(); p.string("__setstate__"); p.string(command); p.setitem()
        let at = p.bytes.count
        p.build(); p.stop()
        let (e, path) = try pickleError(p)
        XCTAssertEqual(e, .refusedCall(path: path, opcode: "BUILD", target: "collections.OrderedDict with state a dict", offset: at))

        let onTensor = stateDict { p in
            p.tensor(storageType: "FloatStorage", key: "0", numel: 2, shape: [2])
            p.emptyDict(); p.build()
        }
        XCTAssertEqual(try pickleError(onTensor, storages: [("0", floats(2))]).0?.opcode, "BUILD")

        // OrderedDict() then BUILD with its attributes is what a module's state_dict() pickles to: accepted.
        var ok = PickleBuilder()
        ok.global("collections", "OrderedDict"); ok.emptyTuple(); ok.reduce(); ok.emptyDict(); ok.string("_metadata"); ok.none(); ok.setitem()
        ok.build(); ok.stop()
        XCTAssertEqual(try opened(ok).names, [])
    }

    /// `INST` (protocol 0's class call): `(S'touch MARKER'\nios\nsystem\n.`, refused by name.
    func testInst() throws {
        var p = PickleBuilder()
        p.mark(); p.string(command); p.op("i"); p.raw(Array("os\nsystem\n".utf8)); p.stop()
        let (e, path) = try pickleError(p)
        XCTAssertEqual(e, .refusedGlobal(path: path, opcode: "INST", global: "os.system", offset: 3 + 5 + command.utf8.count))
    }

    /// `OBJ` calls the class below the mark; never accepted, even for an allowed class.
    func testObj() throws {
        var p = PickleBuilder()
        p.mark(); p.global("collections", "OrderedDict"); p.op("o"); p.stop()
        let (e, path) = try pickleError(p)
        XCTAssertEqual(e, .refusedCall(path: path, opcode: "OBJ", target: "collections.OrderedDict", offset: 28))
    }

    /// `NEWOBJ` makes an instance through `cls.__new__`: only a Parameter (its tensor) is accepted.
    func testNewobj() throws {
        var p = PickleBuilder()
        p.global("collections", "OrderedDict"); p.emptyTuple(); p.newobj(); p.stop()
        let (e, path) = try pickleError(p)
        XCTAssertEqual(e, .refusedCall(path: path, opcode: "NEWOBJ", target: "collections.OrderedDict", offset: 28))

        let parameter = stateDict { p in
            p.global("torch.nn.parameter", "Parameter")
            p.tensor(storageType: "FloatStorage", key: "0", numel: 2, shape: [2]); p.tuple1(); p.newobj()
        }
        XCTAssertEqual(try opened(parameter, storages: [("0", floats(2))]).names, ["w"])
    }

    /// `NEWOBJ_EX` (protocol 4, keyword arguments): never accepted.
    func testNewobjEx() throws {
        var p = PickleBuilder(protocol: 4)
        p.global("collections", "OrderedDict"); p.emptyTuple(); p.emptyDict(); p.raw([0x92]); p.stop()
        let (e, path) = try pickleError(p)
        XCTAssertEqual(e, .refusedCall(path: path, opcode: "NEWOBJ_EX", target: "collections.OrderedDict", offset: 29))
    }

    /// `copyreg.add_extension('os', 'system', 42); pickle.dumps(os.system, 2)` gives `\x80\x02\x82*.`:
    /// the registry is never consulted.
    func testExtensionCodes() throws {
        for (opcode, operand) in [(UInt8(0x82), [UInt8(42)]), (0x83, [42, 0]), (0x84, [42, 0, 0, 0])] {
            var p = PickleBuilder()
            p.raw([opcode] + operand); p.string(command); p.tuple1(); p.reduce(); p.stop()
            let (e, path) = try pickleError(p)
            let name = ["EXT1", "EXT2", "EXT4"][Int(opcode - 0x82)]
            XCTAssertEqual(e, .refusedOpcode(path: path, opcode: name, offset: 2,
                                             reason: "extension code 42 stands for a global from copyreg's registry, which is never consulted"))
        }
    }

    /// `torch.save({'w': t, 'blob': pickle.dumps(Evil(), 2)})`: the nested pickle is bytes, and stays bytes.
    func testAPickleInsideBytesIsNeverUnpickled() throws {
        var evil = PickleBuilder()
        evil.global("os", "system"); evil.string(command); evil.tuple1(); evil.reduce(); evil.stop()
        var p = PickleBuilder()
        p.emptyDict(); p.mark()
        p.string("w"); p.tensor(storageType: "FloatStorage", key: "0", numel: 2, shape: [2])
        p.string("blob"); p.shortBytes(evil.bytes)
        p.setitems(); p.stop()
        let file = try opened(p, storages: [("0", floats(2))])
        XCTAssertEqual(file.names, ["w"])
        let document = try PickleMachine.run(p.bytes.withUnsafeBytes { UnsafeRawBufferPointer($0) }) { _ in 8 }
        guard case let .dict(root) = document.root else { return XCTFail("\(document.root)") }
        XCTAssertEqual(document.dicts[root]["blob"], .bytes(evil.bytes))
    }

    /// An inert placeholder (Lightning's class as a dictionary key) cannot be applied.
    func testTheInertGlobalCannotBeCalled() throws {
        var p = PickleBuilder()
        p.global("pytorch_lightning.callbacks.model_checkpoint", "ModelCheckpoint"); p.emptyTuple(); p.reduce(); p.stop()
        let (e, path) = try pickleError(p)
        XCTAssertEqual(e, .refusedCall(path: path, opcode: "REDUCE", target: "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint", offset: 65))
        // Nor can an allowed global that is not a function (a storage class), nor a value.
        var q = PickleBuilder()
        q.global("torch", "FloatStorage"); q.emptyTuple(); q.reduce(); q.stop()
        XCTAssertEqual(try pickleError(q).0, .refusedCall(path: path, opcode: "REDUCE", target: "a float32 storage class", offset: 23))
        var r = PickleBuilder()
        r.string("os.system"); r.emptyTuple(); r.reduce(); r.stop()
        XCTAssertEqual(try pickleError(r).0, .refusedCall(path: path, opcode: "REDUCE", target: "a str", offset: 17))
    }

    /// APPEND on something that is not a list would call its `append` under CPython.
    func testAppendAndSetitemOnlyFillContainers() throws {
        var p = PickleBuilder()
        p.string("x"); p.string("y"); p.append(); p.stop()
        XCTAssertEqual(try pickleError(p).0?.opcode, "APPEND")
        var q = PickleBuilder()
        q.emptyList(); q.string("k"); q.string("v"); q.setitem(); q.stop()
        XCTAssertEqual(try pickleError(q).0?.opcode, "SETITEM")
    }

    // MARK: Storages and tensors

    /// A persistent id naming a storage the archive lacks, or of another kind than a storage.
    func testPersistentIdsOutOfRange() throws {
        let p = stateDict { p in p.tensor(storageType: "FloatStorage", key: "7", numel: 2, shape: [2]) }
        let (e, path) = try pickleError(p, storages: [("0", floats(2))])
        XCTAssertEqual(e, .badStorage(path: path, key: "7", reason: "is named by the pickle but the archive has no entry for it"))

        let climbing = stateDict { p in p.tensor(storageType: "FloatStorage", key: "../../0", numel: 2, shape: [2]) }
        XCTAssertEqual(try pickleError(climbing, storages: [("0", floats(2))]).0,
                       .badStorage(path: path, key: "../../0", reason: "is named by the pickle but the archive has no entry for it"))

        var notATuple = PickleBuilder()
        notATuple.int(3); notATuple.binpersid(); notATuple.stop()
        XCTAssertEqual(try pickleError(notATuple).0, .malformedPickle(path: path, offset: 4, reason: "BINPERSID's id is an int, not a tuple"))

        var module = PickleBuilder()
        module.mark(); module.string("module"); module.string("os"); module.tuple(); module.binpersid(); module.stop()
        guard case .malformedPickle? = try pickleError(module).0 else { return XCTFail() }
    }

    /// `('storage', torch.FloatStorage, '0', 'cpu', 100)` over a 16-byte entry.
    func testStorageLargerThanItsEntry() throws {
        let p = stateDict { p in p.tensor(storageType: "FloatStorage", key: "0", numel: 100, shape: [2]) }
        let (e, path) = try pickleError(p, storages: [("0", floats(4))])
        XCTAssertEqual(e, .badStorage(path: path, key: "0", reason: "declares 100 float32 elements but its entry holds only 16 bytes"))
        // numel · itemsize overflowing.
        var big = PickleBuilder()
        big.mark(); big.string("storage"); big.global("torch", "DoubleStorage"); big.string("0"); big.string("cpu")
        big.long1(Int64.max / 4); big.tuple(); big.binpersid(); big.stop()
        XCTAssertEqual(try pickleError(big, storages: [("0", floats(4))]).0,
                       .badStorage(path: path, key: "0", reason: "declares \(Int64.max / 4) float64 elements but its entry holds only 16 bytes"))
    }

    /// Offsets and strides that reach past the storage, named by the tensor.
    func testViewsPastTheirStorage() throws {
        let storage = [("0", floats(4))]
        let offset = stateDict { p in p.tensor(storageType: "FloatStorage", key: "0", numel: 4, offset: 3, shape: [2]) }
        let (e, path) = try pickleError(offset, storages: storage)
        XCTAssertEqual(e, .badTensor(path: path, tensor: "w", reason: "reaches element 4 of storage '0', which holds 4 float32 elements"))
        let strided = stateDict { p in p.tensor(storageType: "FloatStorage", key: "0", numel: 4, shape: [2, 2], strides: [3, 1]) }
        XCTAssertEqual(try pickleError(strided, storages: storage).0,
                       .badTensor(path: path, tensor: "w", reason: "reaches element 4 of storage '0', which holds 4 float32 elements"))
        let empty = stateDict { p in p.tensor(storageType: "FloatStorage", key: "0", numel: 4, offset: 5, shape: [0]) }
        XCTAssertEqual(try pickleError(empty, storages: storage).0,
                       .badTensor(path: path, tensor: "w", reason: "reaches element 5 of storage '0', which holds 4 float32 elements"))
        // The same views inside the storage are fine, and read what torch would: w = storage[1:3].
        let inside = stateDict { p in p.tensor(storageType: "FloatStorage", key: "0", numel: 4, offset: 1, shape: [2]) }
        let values: [Float] = [1, 2, 3, 4]
        let file = try opened(inside, storages: [("0", values.withUnsafeBytes { Array($0) })])
        XCTAssertEqual(try file.tensor("w").data, [2, 3])
    }

    /// Negative sizes, strides and offsets; sizes whose product overflows; strides that overflow.
    func testNegativeAndOverflowingShapes() throws {
        let storage = [("0", floats(4))]
        let negative = stateDict { p in p.tensor(storageType: "FloatStorage", key: "0", numel: 4, shape: [-1], strides: [1]) }
        let (e, path) = try pickleError(negative, storages: storage)
        XCTAssertEqual(e, .badTensor(path: path, tensor: "w", reason: "has shape [-1], with a negative size"))
        let negativeStride = stateDict { p in p.tensor(storageType: "FloatStorage", key: "0", numel: 4, offset: 3, shape: [2], strides: [-1]) }
        XCTAssertEqual(try pickleError(negativeStride, storages: storage).0,
                       .badTensor(path: path, tensor: "w", reason: "has strides [-1], with a negative stride"))
        let negativeOffset = stateDict { p in p.tensor(storageType: "FloatStorage", key: "0", numel: 4, offset: -1, shape: [2]) }
        XCTAssertEqual(try pickleError(negativeOffset, storages: storage).0,
                       .badTensor(path: path, tensor: "w", reason: "has a negative storage offset (-1)"))
        let mismatched = stateDict { p in p.tensor(storageType: "FloatStorage", key: "0", numel: 4, shape: [2, 2], strides: [1]) }
        XCTAssertEqual(try pickleError(mismatched, storages: storage).0,
                       .badTensor(path: path, tensor: "w", reason: "has 1 strides for its 2 dimensions"))

        // [2^40, 2^40] elements: the product overflows 64 bits.
        let overflow = stateDict { p in
            p.global("torch._utils", "_rebuild_tensor_v2")
            p.mark()
            p.mark(); p.string("storage"); p.global("torch", "FloatStorage"); p.string("0"); p.string("cpu"); p.int(4); p.tuple()
            p.binpersid(); p.int(0)
            p.mark(); p.long1(1 << 40); p.long1(1 << 40); p.tuple()
            p.mark(); p.long1(1 << 40); p.int(1); p.tuple()
            p.newfalse(); p.global("collections", "OrderedDict"); p.emptyTuple(); p.reduce()
            p.tuple(); p.reduce()
        }
        XCTAssertEqual(try pickleError(overflow, storages: storage).0,
                       .badTensor(path: path, tensor: "w", reason: "has shape [1099511627776, 1099511627776], whose size overflows 64 bits"))
        // Sizes that fit but whose strides walk past Int64.
        let farStride = stateDict { p in
            p.global("torch._utils", "_rebuild_tensor_v2")
            p.mark()
            p.mark(); p.string("storage"); p.global("torch", "FloatStorage"); p.string("0"); p.string("cpu"); p.int(4); p.tuple()
            p.binpersid(); p.int(0)
            p.intTuple([3])
            p.mark(); p.long1(Int64.max / 2 + 1); p.tuple()
            p.newfalse(); p.global("collections", "OrderedDict"); p.emptyTuple(); p.reduce()
            p.tuple(); p.reduce()
        }
        XCTAssertEqual(try pickleError(farStride, storages: storage).0,
                       .badTensor(path: path, tensor: "w", reason: "has strides [\(Int64.max / 2 + 1)] that overflow 64 bits"))
    }

    /// `{"a.b": x, "a": {"b": y}}` gives two tensors named `a.b`.
    func testTwoTensorsWithTheSameFlattenedName() throws {
        var p = PickleBuilder()
        p.emptyDict(); p.mark()
        p.string("a.b"); p.tensor(storageType: "FloatStorage", key: "0", numel: 2, shape: [2])
        p.string("a"); p.emptyDict(); p.string("b"); p.tensor(storageType: "FloatStorage", key: "0", numel: 2, shape: [2]); p.setitem()
        p.setitems(); p.stop()
        let (e, path) = try pickleError(p, storages: [("0", floats(2))])
        XCTAssertEqual(e, .duplicateName(path: path, name: "a.b"))
    }

    // MARK: Recursion and limits

    /// `d = {}; d['a'] = d`: the dictionary contains itself; listing its tensors stops at once.
    /// A list containing itself (`l = []; l.append(l)`) is not walked at all.
    func testRecursiveMemoReferences() throws {
        var p = PickleBuilder()
        p.emptyDict(); p.binput(0); p.string("a"); p.binget(0); p.setitem(); p.stop()
        let (e, path) = try pickleError(p)
        XCTAssertEqual(e, .badStructure(path: path, reason: "a dictionary contains itself at 'a'"))

        var list = PickleBuilder()
        list.emptyDict(); list.string("l"); list.emptyList(); list.binput(0); list.binget(0); list.append(); list.setitem(); list.stop()
        XCTAssertEqual(try opened(list).names, [])

        // The memo can only give back what was stored.
        var missing = PickleBuilder()
        missing.binget(9); missing.stop()
        XCTAssertEqual(try pickleError(missing).0, .malformedPickle(path: path, offset: 2, reason: "the memo has no entry 9"))
    }

    /// Deep nesting: MARKs beyond the limit are refused; a tuple nested 200,000 deep is a flat
    /// arena entry (no recursion to build or free it); dictionaries nested beyond 64 are refused by name.
    func testDeepNesting() throws {
        var marks = PickleBuilder()
        for _ in 0..<5_000 { marks.mark() }
        marks.stop()
        let (e, path) = try pickleError(marks)
        XCTAssertEqual(e, .pickleLimit(path: path, what: "nested MARKs", limit: 1_000))

        var tuples = PickleBuilder()
        tuples.none()
        for _ in 0..<200_000 { tuples.tuple1() }
        tuples.stop()
        XCTAssertEqual(try opened(tuples).names, [])

        var dicts = PickleBuilder()
        for _ in 0..<100 { dicts.emptyDict(); dicts.string("k") }
        dicts.tensor(storageType: "FloatStorage", key: "0", numel: 1, shape: [1])
        for _ in 0..<100 { dicts.setitem() }
        dicts.stop()
        guard case let .badStructure(_, reason)? = try pickleError(dicts, storages: [("0", floats(1))]).0 else { return XCTFail() }
        XCTAssertTrue(reason.hasPrefix("dictionaries nest more than 64 deep at 'k.k.k"), reason)
    }

    /// The stack, the memo and the object count have limits (lowered here so that the test is quick).
    func testMachineLimits() throws {
        func run(_ p: PickleBuilder, _ limits: PickleMachine.Limits) -> PickleMachine.Failure? {
            do {
                _ = try p.bytes.withUnsafeBytes { try PickleMachine.run($0, limits: limits) { _ in nil } }
            } catch let failure as PickleMachine.Failure {
                return failure
            } catch {
                XCTFail("\(error)")
            }
            return nil
        }
        var values = PickleBuilder()
        for _ in 0..<101 { values.none() }
        values.stop()
        XCTAssertEqual(run(values, .init(stack: 100)), .limit(what: "values on its stack", limit: 100))
        var memo = PickleBuilder()
        memo.none()
        for i in 0..<11 { memo.binput(UInt8(i)) }
        memo.stop()
        XCTAssertEqual(run(memo, .init(memo: 10)), .limit(what: "memo entries", limit: 10))
        var objects = PickleBuilder()
        objects.emptyList()
        for _ in 0..<11 { objects.emptyList(); objects.append() }
        objects.stop()
        XCTAssertEqual(run(objects, .init(objects: 10)), .limit(what: "objects", limit: 10))
    }

    /// Pickles that are not torch.save's, or broken: no PROTO, protocol-0 opcodes, no STOP, an unknown
    /// opcode, a string longer than the pickle, invalid UTF-8, an empty stack.
    func testMalformedPickles() throws {
        var noProto = PickleBuilder(protocol: nil)
        noProto.none(); noProto.stop()
        let (e, path) = try pickleError(noProto)
        XCTAssertEqual(e, .refusedOpcode(path: path, opcode: "NONE", offset: 0,
                                         reason: "the pickle does not start with PROTO 2 to 5, as every torch.save pickle does"))
        var text = PickleBuilder()
        text.raw(Array("I42\n".utf8)); text.stop()
        XCTAssertEqual(try pickleError(text).0?.opcode, "INT")
        var noStop = PickleBuilder()
        noStop.none()
        XCTAssertEqual(try pickleError(noStop).0, .malformedPickle(path: path, offset: 3, reason: "the pickle ends without STOP"))
        var unknown = PickleBuilder()
        unknown.raw([0xFF]); unknown.stop()
        XCTAssertEqual(try pickleError(unknown).0, .malformedPickle(path: path, offset: 2, reason: "0xFF is not a pickle opcode"))
        var long = PickleBuilder()
        long.raw([0x58, 0xFF, 0xFF, 0xFF, 0x7F, 0x41]); long.stop()
        XCTAssertEqual(try pickleError(long).0,
                       .malformedPickle(path: path, offset: 2, reason: "an operand of 2147483647 bytes runs past the end of the pickle"))
        var badUTF8 = PickleBuilder()
        badUTF8.raw([0x58, 2, 0, 0, 0, 0xC3, 0x28]); badUTF8.stop()
        XCTAssertEqual(try pickleError(badUTF8).0, .malformedPickle(path: path, offset: 2, reason: "a string is not valid UTF-8"))
        var empty = PickleBuilder()
        empty.tuple1(); empty.stop()
        XCTAssertEqual(try pickleError(empty).0, .malformedPickle(path: path, offset: 2, reason: "TUPLE1 needs a value but the stack is empty"))
        var protocol1 = PickleBuilder(protocol: 1)
        protocol1.none(); protocol1.stop()
        XCTAssertEqual(try pickleError(protocol1).0?.opcode, "PROTO")
    }

    // MARK: The zip archive

    private func validArchive() -> [ZipBuilder.Entry] {
        var p = PickleBuilder()
        p.emptyDict(); p.stop()
        return [ZipBuilder.Entry("archive/data.pkl", p.bytes), ZipBuilder.Entry("archive/byteorder", Array("little".utf8))]
    }

    /// Names that leave the archive, in either separator.
    func testPathTraversal() throws {
        for name in ["../evil", "/etc/passwd", "archive/../../evil", "archive\\..\\..\\evil", "C:\\evil", "archive/data/\u{0}x"] {
            let (e, path) = try openError(ZipBuilder(validArchive() + [ZipBuilder.Entry(name, [1])]).bytes)
            XCTAssertEqual(e, .unsafeEntryName(path: path, name: name), name)
        }
    }

    /// Names from the file with newlines or of any length still give a one-line message (found by the fuzzer:
    /// a local header's name with a newline).
    func testMessagesStayOnOneLine() throws {
        let name = "archive/a\nb\u{2028}c" + String(repeating: "x", count: 10_000)
        var entries = validArchive()
        entries[1].name = name
        entries[1].localName = "archive/other"
        let (e, _) = try openError(ZipBuilder(entries).bytes)
        let text = try XCTUnwrap(e).description
        XCTAssertFalse(text.contains("\n") || text.contains("\u{2028}"), text)
        XCTAssertTrue(text.contains("archive/a\\nb\\u{2028}cxxx"), text)
        XCTAssertLessThan(text.count, 600)
    }

    func testDuplicateNames() throws {
        let (e, path) = try openError(ZipBuilder(validArchive() + [validArchive()[0]]).bytes)
        XCTAssertEqual(e, .duplicateEntry(path: path, name: "archive/data.pkl"))
    }

    /// A deflated entry declaring 1 TB (zip64): refused by its method, never inflated. Its data is
    /// `zlib.compressobj(9, zlib.DEFLATED, -15)` of a million zero bytes (985 bytes).
    func testAZipBombIsNeverInflated() throws {
        let deflated: [UInt8] = [0xED, 0xC1, 0x01, 0x01, 0x00, 0x00, 0x00, 0x82, 0x20, 0xFF, 0xAF, 0x6E, 0x48, 0x40, 0x01]
            + [UInt8](repeating: 0, count: 968) + [0xAF, 0x06]
        var bomb = ZipBuilder.Entry("archive/data/0", deflated)
        bomb.method = 8
        bomb.declaredSize = 1 << 40
        let (e, path) = try openError(ZipBuilder(validArchive() + [bomb]).bytes)
        XCTAssertEqual(e, .compressedEntry(path: path, entry: "archive/data/0", method: 8))
        XCTAssertTrue(e!.description.contains("torch.save stores every entry uncompressed"), e!.description)

        // The overlapping-entries bomb (every entry's data running over the next ones' headers): here
        // data.pkl (data at byte 64) declared one byte longer than the room before byteorder's header.
        var layout = ZipBuilder(validArchive() + [ZipBuilder.Entry("archive/data/0", floats(4))]).build()
        let first = layout.centralDirectory.lowerBound
        let grown = UInt32(layout.localHeaders[1] - 64 + 1)
        for offset in [20, 24] { withUnsafeBytes(of: grown.littleEndian) { layout.bytes.replaceSubrange((first + offset)..<(first + offset + 4), with: $0) } }
        XCTAssertEqual(try openError(layout.bytes).0, .damagedZip(path: path, reason: "entries 'archive/data.pkl' and 'archive/byteorder' overlap"))
    }

    func testEncryptedEntries() throws {
        var secret = ZipBuilder.Entry("archive/data/0", floats(1))
        secret.flags = 1
        let (e, path) = try openError(ZipBuilder(validArchive() + [secret]).bytes)
        XCTAssertEqual(e, .encryptedEntry(path: path, entry: "archive/data/0"))
    }

    /// A download cut short loses the end record; a central directory declared longer than there is
    /// room for, or an entry reaching past the directory, is refused as damaged.
    func testTruncatedCentralDirectoryAndEntriesPastTheFile() throws {
        let layout = ZipBuilder(validArchive() + [ZipBuilder.Entry("archive/data/0", floats(64))]).build()
        let (cut, path) = try openError(Array(layout.bytes.prefix(layout.bytes.count / 2)))
        XCTAssertEqual(cut, .damagedZip(path: path, reason: "it has no end-of-central-directory record (truncated, or not a zip archive)"))

        // The central directory cut in the middle, its end records kept (the zip64 ones dropped).
        var plain = ZipBuilder(validArchive() + [ZipBuilder.Entry("archive/data/0", floats(64))])
        plain.zip64 = false
        let p = plain.build()
        let truncated = Array(p.bytes[..<(p.centralDirectory.lowerBound + 60)]) + Array(p.bytes[p.endRecord...])
        guard case let .damagedZip(_, reason)? = try openError(truncated).0 else { return XCTFail() }
        XCTAssertTrue(reason.contains("the directory is truncated"), reason)

        // An entry whose declared size runs past the central directory.
        var long = p.bytes
        let thirdEntry = p.centralDirectory.lowerBound + 2 * 46 + "archive/data.pkl".utf8.count + "archive/byteorder".utf8.count
        for offset in [20, 24] { withUnsafeBytes(of: UInt32(1 << 30).littleEndian) { long.replaceSubrange((thirdEntry + offset)..<(thirdEntry + offset + 4), with: $0) } }
        guard case let .damagedZip(_, reason2)? = try openError(long).0 else { return XCTFail() }
        XCTAssertTrue(reason2.contains("'archive/data/0'") && reason2.contains("reaches past the entries"), reason2)

        // Not a zip at all, and empty.
        XCTAssertEqual(try openError(Array("PK\u{3}\u{4} nothing else".utf8)).0,
                       .damagedZip(path: path, reason: "it has no end-of-central-directory record (truncated, or not a zip archive)"))
        XCTAssertEqual(try openError([]).0, .emptyFile(path: path))
    }

    /// A local header that names another file than its directory entry, or is not there.
    func testLocalHeadersMustAgree() throws {
        var entries = validArchive()
        entries[1].localName = "archive/elsewhere"
        let (e, path) = try openError(ZipBuilder(entries).bytes)
        XCTAssertEqual(e, .damagedZip(path: path, reason: "the local header of 'archive/byteorder' names another entry"))
    }

    /// Archives that are zips but not torch.save's.
    func testNotATorchArchive() throws {
        let (e, path) = try openError(ZipBuilder([ZipBuilder.Entry("readme.txt", [1])]).bytes)
        XCTAssertEqual(e, .notATorchArchive(path: path, reason: "it has no data.pkl in a top folder"))
        var p = PickleBuilder()
        p.emptyDict(); p.stop()
        let big = torchArchive(p.bytes, byteorder: "big")
        guard case let .notATorchArchive(_, reason)? = try openError(big).0 else { return XCTFail() }
        XCTAssertTrue(reason.hasPrefix("its byteorder is 'big'"), reason)
        // A damaged data.pkl fails its checksum.
        var layout = ZipBuilder(validArchive()).build()
        layout.bytes[64 + 2] ^= 0xFF
        XCTAssertEqual(try openError(layout.bytes).0, .damagedZip(path: path, reason: "the checksum of archive/data.pkl does not match its contents"))
        // No checksum recorded, as torch.save writes after set_crc32_options(False): nothing to check.
        var unchecked = validArchive()
        unchecked[0].crc32 = 0
        XCTAssertEqual(try opened(unchecked).names, [])
    }

    /// A FIFO named like a pickle is refused without being opened (opening it would block).
    func testAFIFOIsNotOpened() throws {
        let fifo = dir.appendingPathComponent("fifo.ckpt")
        XCTAssertEqual(mkfifo(fifo.path, 0o600), 0)
        XCTAssertEqual(torchFileError { _ = try openTensorFile(fifo, pickles: .read) }, .notARegularFile(path: fifo.path))
    }
}

private extension TorchFileError {
    /// The opcode a refusal names, for tests that check only which opcode was refused.
    var opcode: String? {
        switch self {
        case let .refusedCall(_, opcode, _, _), let .refusedGlobal(_, opcode, _, _), let .refusedOpcode(_, opcode, _, _): return opcode
        default: return nil
        }
    }
}
