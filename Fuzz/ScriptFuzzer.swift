// libFuzzer harness: a script file's bytes through the line parser, and each command's argument
// through the prompt parsers the way a `gen` reads a prompt. Built by Fuzz/run.sh together with
// Sources/SDScript/Language/ScriptLine.swift, ScriptError.swift, Transcript/Transcript.swift and
// Sources/Diffusion/Text/{ExtraNetworks,PromptComposition,PromptSchedule,PromptParser}.swift.
//
// Besides not crashing, every input is checked against what the parsers promise: a result line
// reads back as the same record from its own text, and a prompt schedule has at least one entry,
// ends at the last step, and keeps its entries in increasing step order.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    // Scripts are read as UTF-8 (`run FILE`) or as lines from standard input (`sdrepl < FILE`,
    // which repairs bad bytes); decoding with repair covers both.
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    // Requests allow 1...1000 steps, but every path through the schedule shows in far fewer, and
    // rendering a schedule per step is most of an input's time. Taking the count from the input
    // keeps a run repeatable.
    let steps = 1 + size % 50
    for line in scriptLines(text) {
        switch ScriptLine(line) {
        case .result(let record):
            let reread = ResultRecord(line: record.description)
            precondition(reread == record, "the result line \(record) reads back as \(String(describing: reread))")
        case .command(let command):
            _ = command.argument.droppingTrailingComment().words
            readPrompt(command.argument, steps: steps)
        case .blank, .comment, .malformedResult:
            break
        }
    }
    return 0
}

/// The lines of a script, as `Session.lines(of:)` splits them (LF or CRLF).
private func scriptLines(_ text: String) -> [String] {
    var lines = text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" })
        .map { $0.hasSuffix("\r") ? String($0.dropLast()) : String($0) }
    if lines.last == "" { lines.removeLast() }
    return lines
}

/// The prompt's path to the text encoder (`StableDiffusionPipeline.conditioning(for:)`): LoRA tags
/// out, `AND` parts, each part's schedule, each scheduled text's attention weights; and the
/// negative prompt's path, which skips the first two.
private func readPrompt(_ prompt: String, steps: Int) {
    _ = ExtraNetworks.tags(in: prompt)
    if let stripped = try? ExtraNetworks.parse(prompt).prompt {
        for part in PromptComposition.parts(of: stripped) {
            schedule(part.text, steps: steps)
        }
    }
    schedule(prompt, steps: steps)
}

private func schedule(_ prompt: String, steps: Int) {
    let schedule = PromptSchedule(prompt, steps: steps)
    let ends = schedule.entries.map(\.endAtStep)
    precondition(ends.last == steps, "the schedule of \(prompt.debugDescription) over \(steps) steps ends at \(ends)")
    precondition(zip(ends, ends.dropFirst()).allSatisfy { $0 < $1 }, "schedule steps out of order: \(ends)")
    for evaluation in [0, steps / 2, steps] {
        precondition(schedule.entries.indices.contains(schedule.entryIndex(forEvaluation: evaluation)))
    }
    for text in schedule.prompts {
        _ = try? PromptParser.parse(text)
    }
}
