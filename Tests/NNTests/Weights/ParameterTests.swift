import Foundation
import XCTest
@testable import NN
import TestSupport

/// `Weights.parameter` refuses a weight whose stored type is not a float's, when the model is built:
/// reading an F8 weight later could only stop the process (`Parameter.value`'s fatal error), and
/// integers would be read as the weight's values, decoding to wrong pixels with no message.
final class ParameterTests: XCTestCase {
    private func notFloat(_ weights: Weights, _ name: String, shape: [Int]) -> WeightsError? {
        do {
            _ = try weights.parameter(name, shape: shape)
            XCTFail("\(name) was taken")
        } catch {
            return error as? WeightsError
        }
        return nil
    }

    func testWeightsStoredAsAnythingButFloatsAreRefusedWhenTaken() throws {
        let dir = try makeWeightsTestDirectory(self)
        let values: [Float] = [1, -2, 3, 0.5]
        let plain = try writeSafetensors(dir.appendingPathComponent("plain.safetensors"),
                                         ["f32", "f16", "bf16", "f64", "f8", "i8", "i64", "flag"].map { (name: $0, dtype: SafetensorsDType.f32, shape: [4], values: values) })
        let types: [String: SafetensorsDType] = ["f16": .f16, "bf16": .bf16, "f64": .f64, "f8": .f8e4m3, "i8": .i8, "i64": .i64, "flag": .bool]
        let url = try writeRetyped(try SafetensorsFile(url: plain), to: dir.appendingPathComponent("mixed.safetensors")) { types[$0.name] }
        let torch = try writeTorchTwin(of: try SafetensorsFile(url: url), to: dir.appendingPathComponent("mixed.pt"), wrapper: nil)

        for file in [url, torch] {
            let weights = Weights(source: try openTensorFile(file), prefix: "", keepConverted: false)
            for name in ["f32", "f16", "bf16", "f64"] {
                XCTAssertEqual(try weights.parameter(name, shape: [4]).value.data, values, "\(name) in \(file.lastPathComponent)")
            }
            for (name, dtype) in [("f8", "F8_E4M3"), ("i8", "I8"), ("i64", "I64"), ("flag", "BOOL")] {
                XCTAssertEqual(notFloat(weights, name, shape: [4]), .notFloat(tensor: name, dtype: dtype, path: file.path), "\(name) in \(file.lastPathComponent)")
            }
        }
        // The message says what the tensor is, where, and what to do, on one line.
        let f8 = WeightsError.notFloat(tensor: "1.weight", dtype: "F8_E4M3", path: "/m/taesd_decoder.safetensors").description
        XCTAssertEqual(f8, "tensor '1.weight' in /m/taesd_decoder.safetensors is F8_E4M3 (a float type sdrepl cannot read); sdrepl reads "
                       + "weights stored as F32, F16, BF16 or F64: convert the file to fp16 or fp32, or use its fp16 release")
        XCTAssertTrue(WeightsError.notFloat(tensor: "w", dtype: "I8", path: "/m/x").description.contains("is I8 (integers, not floats)"))
        XCTAssertTrue(WeightsError.notFloat(tensor: "w", dtype: "BOOL", path: "/m/x").description.contains("is BOOL (booleans, not floats)"))
        XCTAssertFalse(WeightsError.notFloat(tensor: "a\nb", dtype: "I8", path: "/m/x").description.contains("\n"))
    }
}
