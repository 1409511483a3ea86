import FileErrors
import Diffusion
import Foundation

/// What tab completion proposes for the text left of the cursor.
public struct Completion: Equatable, Sendable {
    /// The partial word being completed (the text it replaces ends at the cursor).
    public var word: String
    /// Full replacements for `word`, sorted; directories end in "/".
    public var candidates: [String]

    /// The text to insert at the cursor: the rest of the only candidate (plus a blank, unless it is a
    /// directory), or the longest prefix the candidates share beyond `word`.
    public var insertion: String {
        guard let first = candidates.first else { return "" }
        if candidates.count == 1 {
            let rest = String(first.dropFirst(word.count))
            // A folder, or a grid's `X=` / `X=seed:`, goes on without a blank.
            return first.hasSuffix("/") || first.hasSuffix("=") || first.hasSuffix(":") ? rest : rest + " "
        }
        var common = first
        for candidate in candidates.dropFirst() {
            while !candidate.lowercased().hasPrefix(common.lowercased()) { common.removeLast() }
        }
        return common.count > word.count ? String(common.dropFirst(word.count)) : ""
    }

    /// What to list when the candidates are ambiguous: the last path component for paths.
    public var displayCandidates: [String] {
        candidates.map { candidate in
            guard candidate.contains("/") else { return candidate }
            let trimmed = candidate.hasSuffix("/") ? String(candidate.dropLast()) : candidate
            let name = trimmed.split(separator: "/").last.map(String.init) ?? trimmed
            return candidate.hasSuffix("/") ? name + "/" : name
        }
    }
}

extension Session {
    /// Completion of commands, setting names, setting values (styles, samplers, modes) and file paths.
    ///
    /// - Parameter prefix: the line up to the cursor.
    public func complete(_ prefix: String) -> Completion {
        let leading = prefix.drop(while: { $0 == " " || $0 == "\t" })
        guard let space = leading.firstIndex(where: { $0 == " " || $0 == "\t" }) else {
            let word = String(leading)
            return Completion(word: word, candidates: matching(word, Command.table.map(\.name)))
        }
        let commandWord = String(leading[..<space])
        let rest = String(leading[space...].drop(while: { $0 == " " || $0 == "\t" }))
        guard let command = Command.named(commandWord) else { return Completion(word: rest, candidates: []) }
        switch command.completion {
        case .none:
            let word = lastWord(rest)
            // In a prompt, `<lora:` completes to the LoRAs found (`<lora:NAME:1>`).
            if command.name == "prompt", let open = word.lastIndex(of: "<") {
                let tag = String(word[open...])
                if tag.count >= 2, "<lora:".hasPrefix(tag) || tag.hasPrefix("<lora:") {
                    let tags = LoRALibrary.names(in: loraDirectories()).map { "<lora:\($0):1>" }
                    return Completion(word: tag, candidates: matching(tag, tags))
                }
            }
            return Completion(word: word, candidates: [])
        case .commands:
            return Completion(word: rest, candidates: matching(rest, Command.table.map(\.name)))
        case .settingKeys:
            return Completion(word: rest, candidates: matching(rest, SettingKey.names))
        case .paths:
            var candidates = completePath(rest)
            if command.name == "model", "download".hasPrefix(rest), !rest.isEmpty || candidates.isEmpty {
                candidates.insert("download", at: 0)
            }
            if command.name == "init" { candidates = imageNumbers(matching: rest) + candidates }
            return Completion(word: rest, candidates: candidates)
        case .upscalers:
            // `upscale [N] [MODEL] [xS]`: the model word, by name or path.
            let word = lastWord(rest)
            let names = UpscalerLibrary.files(in: upscalerDirectories()).map(\.name)
            return Completion(word: word, candidates: matching(word, names) + (word.isEmpty ? [] : completePath(word)))
        case .words(let words):
            // Only the first word: after `transcript save `, a path is typed.
            guard !rest.contains(" ") else { return Completion(word: lastWord(rest), candidates: []) }
            return Completion(word: rest, candidates: matching(rest, words))
        case .gridAxes:
            let word = lastWord(rest)
            return Completion(word: word, candidates: matching(word, GridSpec.completions(for: word)))
        case .setting:
            guard let keyEnd = rest.firstIndex(where: { $0 == " " || $0 == "\t" }) else {
                return Completion(word: rest, candidates: matching(rest, SettingKey.names))
            }
            let value = String(rest[keyEnd...].drop(while: { $0 == " " || $0 == "\t" }))
            guard let key = SettingKey.named(String(rest[..<keyEnd])) else { return Completion(word: value, candidates: []) }
            if key.completesPaths {
                // A key that takes a path or a name (`hires-upscaler`) offers both.
                let numbers = key.name == "init" ? imageNumbers(matching: value) : []
                return Completion(word: value, candidates: numbers + matching(value, key.choices(self) ?? []) + completePath(value))
            }
            return Completion(word: value, candidates: matching(value, key.choices(self) ?? []))
        }
    }

    /// This session's image numbers that start with `word` (for `init N`), when `word` is a number or empty.
    private func imageNumbers(matching word: String) -> [String] {
        guard word.allSatisfy(\.isNumber), !images.isEmpty else { return [] }
        return (1...images.count).map(String.init).filter { $0.hasPrefix(word) }
    }

    private func lastWord(_ text: String) -> String {
        String(text.reversed().prefix(while: { $0 != " " && $0 != "\t" }).reversed())
    }

    private func matching(_ word: String, _ names: [String]) -> [String] {
        names.filter { $0.lowercased().hasPrefix(word.lowercased()) }
    }

    /// File names that start with `partial`; "~/" is understood, directories end in "/".
    func completePath(_ partial: String) -> [String] {
        let expanded = partial.hasPrefix("~/") ? partial.expandingTilde : partial
        let folderPart: String
        let namePart: String
        if let slash = expanded.lastIndex(of: "/") {
            folderPart = String(expanded[...slash])
            namePart = String(expanded[expanded.index(after: slash)...])
        } else {
            folderPart = ""
            namePart = expanded
        }
        let folder = folderPart.isEmpty ? "." : folderPart
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return [] }
        let typedFolder = String(partial.dropLast(namePart.count))
        return entries.filter { $0.hasPrefix(namePart) && (namePart.hasPrefix(".") || !$0.hasPrefix(".")) }
            .sorted()
            .map { name in
                var isDirectory: ObjCBool = false
                _ = FileManager.default.fileExists(atPath: folderPart + name, isDirectory: &isDirectory)
                return typedFolder + name + (isDirectory.boolValue ? "/" : "")
            }
    }
}
