import Foundation

/// `help`, the `set` listing and `transcript`.
extension Command {
    /// `transcript`: where the session is recorded and whether that works; `transcript save PATH`.
    static func transcript(_ argument: String, session: Session, at location: SourceLocation?) throws {
        let words = CommandText(argument)
        let notRecorded = "this session is not recorded (a script, or --no-record)"
        if argument.isEmpty {
            guard let recorder = session.transcript else {
                session.io.output("transcript: " + notRecorded)
                return
            }
            let count = recorder.lines.count
            if let failure = recorder.failure {
                session.io.output("transcript: writing \(recorder.path) failed (\(failure)); \(count) line\(count == 1 ? "" : "s") "
                                  + "kept in memory; 'transcript save PATH' writes them")
            } else {
                session.io.output("transcript: recording to \(recorder.path) (\(count) line\(count == 1 ? "" : "s"))")
            }
            return
        }
        guard words.name.lowercased() == "save" else {
            throw ScriptError.badArgument(command: "transcript", argument: words.name, reason: "expected nothing or 'save PATH', got",
                                          suggestion: closestWord(to: words.name, in: ["save"]))
        }
        guard !words.argument.isEmpty else { throw ScriptError.missingArgument(command: "transcript save", usage: "transcript save PATH") }
        guard let recorder = session.transcript else { throw ScriptError.notReady(command: "transcript save", reason: notRecorded) }
        let path = session.resolve(words.argument, relativeTo: location)
        let count = try recorder.save(to: path)
        session.io.output("transcript: wrote \(count) line\(count == 1 ? "" : "s") to \(path); recording goes on there")
    }

    static func listSettings(_ session: Session) {
        let defaults = SessionSettings()
        let width = SettingKey.all.map(\.name.count).max() ?? 0
        for key in SettingKey.all {
            var value = key.show(session.settings)
            if key.name == "preview" { value = session.io.previewStatus(session.settings.output.preview) }
            let marker = key.show(session.settings) == key.show(defaults) ? "" : "   (changed)"
            session.io.output(key.name.padding(toLength: width + 2, withPad: " ", startingAt: 0) + value + marker)
        }
    }

    static func help(_ argument: String, session: Session) throws {
        let columns = session.io.outputColumns
        // Help's lines wrap at the terminal's width, each continuation under the text it continues.
        func say(_ line: String, indent: Int = 2) {
            wrapped(line, columns: columns, indent: indent).forEach(session.io.output)
        }
        guard !argument.isEmpty else {
            let width = table.map(\.usage.count).max() ?? 0
            for command in table {
                say(command.usage.padding(toLength: width + 2, withPad: " ", startingAt: 0) + command.summary, indent: width + 2)
            }
            say("One command per line; the rest of the line is the argument, verbatim. '#' starts a comment line; after a number "
                + "or a word (set steps 20 # twenty) ' # …' is a comment too, but in a prompt or a path '#' is text.", indent: 0)
            return
        }
        // `help set steps` or `help steps`: one setting.
        let words = CommandText(argument)
        let explicitSet = words.name.lowercased() == "set" && !words.argument.isEmpty
        let settingName = explicitSet ? words.argument : argument
        // `help set seed` is the setting even where a command has its name (`help seed` is the command).
        if explicitSet || named(settingName) == nil, let key = SettingKey.named(settingName) {
            say("usage: set \(key.name) \(key.values)   (default: \(key.defaultValue))")
            if let about = SettingKey.about[key.name] { say("  " + about) }
            say("  a setting: 'set \(key.name)' changes it, 'unset \(key.name)' restores the default, 'set' lists them all")
            return
        }
        guard let command = named(argument) else {
            throw ScriptError.badArgument(command: "help", argument: argument, reason: "no such command or setting",
                                          suggestion: closestWord(to: argument, in: table.map(\.name) + SettingKey.names))
        }
        say("usage: \(command.usage)")
        say("  \(command.summary)")
        if command.name == "grid" { GridSpec.help.forEach { say($0, indent: 4) } }
        if command.name == "set" || command.name == "unset" {
            let width = SettingKey.all.map(\.name.count).max() ?? 0
            for key in SettingKey.all {
                say("  " + key.name.padding(toLength: width + 2, withPad: " ", startingAt: 0) + key.values
                    + "   (default: \(key.defaultValue))", indent: width + 4)
            }
        }
    }

    /// `line` in lines of at most `columns` characters, broken at spaces (a longer word stands
    /// alone), each line after the first indented by `indent` (4 where that is half the width or
    /// more); the line itself without a width.
    static func wrapped(_ line: String, columns: Int?, indent: Int) -> [String] {
        guard let columns, line.count > columns else { return [line] }
        // Under a column that takes half the width, continuations would be a few words each.
        let lead = String(repeating: " ", count: indent < columns / 2 ? indent : 4)
        // Empty words are runs of spaces (alignment), kept as typed.
        let words = line.split(separator: " ", omittingEmptySubsequences: false)
        var lines: [String] = [], current = String(words[0])
        for word in words.dropFirst() {
            if word.isEmpty || current.count + 1 + word.count <= columns {
                current += " " + word
            } else {
                lines.append(String(current.reversed().drop { $0 == " " }.reversed()))
                current = lead + word
            }
        }
        lines.append(current)
        return lines
    }
}
