import Foundation
import TestSupport
import XCTest

/// The real `sdrepl` binary on a pseudo-terminal: what a user at a terminal gets.
final class TerminalSessionTests: XCTestCase {
    private let left = "\u{1B}[D"
    private let up = "\u{1B}[A"
    private let backspace = "\u{7F}"

    /// Starts an interactive session and waits for the first prompt.
    /// By default the terminal answers DA1 like a VT220 without sixel, as real terminals do at once.
    private func start(_ sandbox: Sandbox, arguments: [String] = [], da1Reply: String? = "\u{1B}[?62;22c") throws -> PseudoTerminal {
        let terminal = try PseudoTerminal(arguments, in: sandbox, da1Reply: da1Reply)
        terminal.expect("sd> ")
        return terminal
    }

    private func quit(_ terminal: PseudoTerminal) {
        terminal.type("quit\r")
        XCTAssertEqual(terminal.waitForExit(), 0)
    }

    /// Every file write failing (`ulimit -f 0` gives EFBIG, as a full disk gives ENOSPC, since
    /// sdrepl ignores the SIGXFSZ that would otherwise kill it without a word): the session says once that its transcript cannot be written instead of claiming to record it,
    /// keeps the lines, and `quit` warns once before leaving without them.
    func testATranscriptThatCannotBeWrittenIsReportedOnceAndQuitWarns() throws {
        let sandbox = Sandbox()
        let terminal = try PseudoTerminal([], in: sandbox, da1Reply: "\u{1B}[?62;22c", shellSetup: "ulimit -f 0")
        terminal.expect("transcript: cannot write sessions/")
        terminal.expect("sd> ")
        for line in ["prompt a fox", "set steps 3", "seed 4"] {
            terminal.type(line + "\r")
            terminal.expect("sd> ")
        }
        terminal.type("transcript\r")
        terminal.expect("lines kept in memory; 'transcript save PATH' writes them")
        terminal.expect("sd> ")
        terminal.type("quit\r")
        terminal.expect("quit: the transcript is only in memory")
        terminal.expect("sd> ")
        terminal.type("quit\r")
        XCTAssertEqual(terminal.waitForExit(), 0)
        XCTAssertEqual(terminal.transcript.components(separatedBy: "transcript: cannot write").count, 2, terminal.transcript)
        XCTAssertFalse(terminal.transcript.contains("recording this session to"), terminal.transcript)
        let files = sandbox.files(in: "sessions")
        XCTAssertEqual(files.count, 1)
        let size = try FileManager.default.attributesOfItem(atPath: sandbox.path + "/sessions/" + files[0])[.size] as? NSNumber
        XCTAssertEqual(size?.intValue, 0)
    }

    /// A sessions folder that cannot be made (here a file is in its way) keeps the session in
    /// memory: `transcript save` writes it, and `quit` warns first.
    func testASessionsFolderThatCannotBeMadeKeepsTheTranscriptInMemory() throws {
        let sandbox = Sandbox()
        sandbox.write("taken", "")
        let terminal = try PseudoTerminal(["--sessions", "taken"], in: sandbox, da1Reply: "\u{1B}[?62;22c")
        terminal.expect("taken: cannot create the sessions directory (it is a file, not a folder); use --sessions DIR or --no-record "
                        + "(this session is kept in memory: 'transcript save PATH' writes it)")
        terminal.expect("sd> ")
        terminal.type("prompt a fox\r")
        terminal.expect("sd> ")
        terminal.type("quit\r")
        terminal.expect("quit: the transcript is only in memory")
        terminal.expect("sd> ")
        terminal.type("transcript save kept.sdscript\r")
        terminal.expect("transcript: wrote ")
        terminal.expect("sd> ")
        terminal.type("quit\r")
        XCTAssertEqual(terminal.waitForExit(), 0)
        let text = try String(contentsOfFile: sandbox.path + "/kept.sdscript", encoding: .utf8)
        XCTAssertTrue(text.hasPrefix("# sdrepl "), text)
        XCTAssertTrue(text.contains("\nprompt a fox\n"), text)
    }

    func testEditingKeysMoveInsertAndDelete() throws {
        let sandbox = Sandbox()
        let terminal = try start(sandbox)
        // "set stepz 30", three lefts put the cursor after "z", backspace deletes it, "s" goes in its place.
        terminal.type("set stepz 30" + left + left + left + backspace + "s\r")
        terminal.expect("sd> ")
        terminal.type("set\r")
        terminal.expect("steps           30   (changed)")
        terminal.expect("sd> ")
        // Ctrl-A goes to the start of the line.
        terminal.type("steps 40\u{01}set \r")
        terminal.expect("sd> ")
        terminal.type("set\r")
        terminal.expect("steps           40   (changed)")
        quit(terminal)
    }

    func testNonASCIIPromptsSurviveEditing() throws {
        let sandbox = Sandbox()
        let terminal = try start(sandbox)
        terminal.type("prompt café au lait ☕, 東京" + left + left + "x\r")
        terminal.expect("sd> ")
        terminal.type("set\r")
        terminal.expect("prompt          café au lait ☕, x東京   (changed)")
        quit(terminal)
    }

    func testHistoryRecallsEarlierLinesAcrossSessions() throws {
        let sandbox = Sandbox()
        let first = try start(sandbox)
        first.type("set steps 17\r")
        first.expect("sd> ")
        quit(first)
        let history = try String(contentsOfFile: sandbox.path + "/state/sdrepl/history", encoding: .utf8)
        XCTAssertTrue(history.contains("set\\040steps\\04017"), history)

        let second = try start(sandbox)
        second.type("set cfg 3\r")
        second.expect("sd> ")
        second.type(up + up + up + "\r")  // back past "set cfg 3" and "quit" to the last session's line
        second.expect("sd> ")
        second.type("set\r")
        second.expect("steps           17   (changed)")
        quit(second)

        // `--no-record` keeps nothing on disk: the history file is as the last session left it,
        // though Up still recalls this session's lines.
        let before = try String(contentsOfFile: sandbox.path + "/state/sdrepl/history", encoding: .utf8)
        let third = try start(sandbox, arguments: ["--no-record"])
        third.type("set steps 23\r")
        third.expect("sd> ")
        third.type(up + "\u{7F}\u{7F}31\r")
        third.expect("sd> ")
        third.type("set\r")
        third.expect("steps           31   (changed)")
        quit(third)
        XCTAssertEqual(try String(contentsOfFile: sandbox.path + "/state/sdrepl/history", encoding: .utf8), before)
    }

    /// Ctrl-Z then `fg`: the shell leaves the terminal in its own cooked mode; on SIGCONT the line
    /// editor sets its raw mode again and redraws, so Up recalls a line rather than echoing `^[[A`.
    func testAfterAStopAndContinueTheLineEditorWorksAgain() throws {
        let sandbox = Sandbox()
        let terminal = try start(sandbox)
        terminal.type("set steps 17\r")
        terminal.expect("sd> ")
        terminal.settle()
        kill(terminal.pid, SIGSTOP)
        // What a shell does while the job is stopped: its own, cooked, echoing mode.
        var mode = termios()
        XCTAssertEqual(tcgetattr(terminal.master, &mode), 0)
        mode.c_lflag |= tcflag_t(ICANON | ECHO)
        XCTAssertEqual(tcsetattr(terminal.master, TCSANOW, &mode), 0)
        kill(terminal.pid, SIGCONT)
        terminal.expect("sd> ")
        terminal.settle()
        terminal.type(up + "\u{7F}\u{7F}23\r")
        terminal.expect("sd> ")
        terminal.type("set\r")
        terminal.expect("steps           23   (changed)")
        XCTAssertFalse(terminal.transcript.contains("^[[A"), terminal.transcript)
        quit(terminal)
    }

    func testTabCompletesCommandsSettingsAndValues() throws {
        let sandbox = Sandbox()
        let terminal = try start(sandbox)
        terminal.type("se\t")
        terminal.expect("seed  set")  // two candidates: listed, and the line drawn again
        terminal.expect("sd> se")
        terminal.type("t sam\t")
        terminal.expect("pler ")  // "set sam" completed to "set sampler "
        terminal.type("eu\t")
        terminal.expect("ler")  // "eu" extended to "euler", the prefix euler and euler-a share
        terminal.type("-a\r")
        terminal.expect("sd> ")
        terminal.type("hist\t\r")
        terminal.expect("no images yet")
        terminal.type("set\r")
        terminal.expect("sampler         euler-a   (changed)")
        quit(terminal)
    }

    func testCtrlCClearsTheLineAndCtrlDExits() throws {
        let sandbox = Sandbox()
        let terminal = try start(sandbox)
        terminal.type("set steps 99\u{03}")
        terminal.expect("sd> ")
        terminal.type("set\r")
        terminal.expect("steps           25\r\n")
        terminal.expect("sd> ")
        terminal.type("\u{04}")
        XCTAssertEqual(terminal.waitForExit(), 0)
    }

    func testSixelDetectedWhenTheTerminalListsAttribute4() throws {
        let sandbox = Sandbox()
        let terminal = try start(sandbox, da1Reply: "\u{1B}[?62;4;6;22c")
        terminal.type("set\r")
        terminal.expect("preview         auto (sixel: the terminal lists attribute 4)")
        XCTAssertEqual(terminal.da1Queries, 1)
        terminal.type("set\r")
        terminal.expect("auto (sixel")
        XCTAssertEqual(terminal.da1Queries, 1, "the terminal is asked once")
        quit(terminal)
    }

    func testKeysTypedDuringTheTerminalQueryAreKept() throws {
        let sandbox = Sandbox()
        let terminal = try PseudoTerminal([], in: sandbox, da1Reply: "\u{1B}[?62;4;22c")
        terminal.type("set steps 7\r")  // at once: typically while the program is still asking the terminal
        terminal.expect("sd> ")
        terminal.type("set\r")
        terminal.expect("steps           7   (changed)")
        quit(terminal)
    }

    func testNoSixelWhenTheTerminalDoesNotListIt() throws {
        let sandbox = Sandbox()
        let terminal = try start(sandbox, da1Reply: "\u{1B}[?62;22c")
        terminal.type("set\r")
        terminal.expect("preview         auto (off: the terminal does not list sixel)")
        terminal.type("set preview sixel\r")
        terminal.expect("sd> ")
        terminal.type("set\r")
        terminal.expect("preview         sixel   (changed)")
        quit(terminal)
    }

    func testATerminalThatDoesNotAnswerIsGivenUpOn() throws {
        let sandbox = Sandbox()
        let terminal = try start(sandbox, da1Reply: nil)
        terminal.type("set\r")
        terminal.expect("preview         auto (off: the terminal did not answer)")
        quit(terminal)
    }

    /// Over SSH a terminal's answer can take more than a second; read after the wait, it became
    /// the start of the user's first command ("unknown command ';600;800t62;4;22cset'"). Over SSH
    /// sdrepl waits three seconds.
    func testASlowAnswerOverSSHIsStillTheTerminals() throws {
        let sandbox = Sandbox()
        sandbox.extraEnvironment["SSH_CONNECTION"] = "192.0.2.1 50000 192.0.2.2 22"
        let terminal = try PseudoTerminal([], in: sandbox, da1Reply: "\u{1B}[?62;4;22c")
        terminal.da1Delay = 1.5
        terminal.expect("sd> ")
        terminal.type("set\r")
        terminal.expect("preview         auto (sixel: the terminal lists attribute 4)")
        XCTAssertFalse(terminal.transcript.contains("unknown command"), terminal.transcript)
        quit(terminal)
    }

    /// A progress line longer than the terminal is wide wrapped, and each update then began a new
    /// row; the bar now narrows to fit (and a line still too long is cut), so the ETA stays in view.
    func testProgressLinesFitANarrowTerminal() throws {
        let sandbox = Sandbox()
        let model = FixturePaths.root.appendingPathComponent("models/tiny-sd15-diffusers").path
        let terminal = try PseudoTerminal(["--model", model], in: sandbox, da1Reply: "\u{1B}[?62;22c", shellSetup: "stty cols 50 rows 24")
        terminal.expect("sd> ")
        terminal.type("set size 256x256\rset steps 12\rgen 2\r")
        terminal.expect("image 2: seed")
        // Each update is "\r" + the line + "ESC [ K" (split on scalars: "\r\n" is one Character).
        let updates = terminal.transcript.unicodeScalars.split(separator: "\r").map { String(String.UnicodeScalarView($0)) }
            .compactMap { segment in segment.range(of: "\u{1B}[K").map { String(segment[..<$0.lowerBound]) } }
            .filter { $0.contains("s/step") }
        XCTAssertFalse(updates.isEmpty, String(terminal.transcript.suffix(700)).debugDescription)
        for update in updates {
            XCTAssertLessThanOrEqual(update.count, 49, update)
            XCTAssertTrue(update.contains(" s/step  ETA "), update)
            XCTAssertTrue(update.hasPrefix("image ") && !update.contains("[" + String(repeating: ".", count: 24)), "a narrower bar: \(update)")
            // Before a step is timed the ETA is unknown, not a "0s" that reads as done.
            if update.contains(" 0/12 ") { XCTAssertTrue(update.hasSuffix("ETA ?"), update) }
        }
        XCTAssertTrue(updates.contains { $0.contains(" 0/12 ") }, "the bar starts at 0")
        quit(terminal)
    }

    /// TERM=dumb (Emacs' shell): no terminal queries, no escape sequences, and `set` says why;
    /// progress comes as plain lines (the first timed step, then every 10 s, and the last).
    func testNoEscapeSequencesForADumbTerminal() throws {
        let sandbox = Sandbox()
        sandbox.extraEnvironment["TERM"] = "dumb"
        let model = FixturePaths.root.appendingPathComponent("models/tiny-sd15-diffusers").path
        let terminal = try PseudoTerminal(["--model", model], in: sandbox, da1Reply: "\u{1B}[?62;4;22c")
        terminal.expect("sd> ")
        terminal.type("set\r")
        terminal.expect("preview         auto (off: TERM is dumb)")
        terminal.type("set size 64x64\rset steps 3\rgen\r")
        terminal.expect("image 1: seed")
        quit(terminal)
        XCTAssertEqual(terminal.da1Queries, 0)
        XCTAssertFalse(terminal.transcript.contains("\u{1B}[14t"), terminal.transcript.debugDescription)
        XCTAssertFalse(terminal.transcript.contains("\u{1B}[K"), terminal.transcript.debugDescription)
        let lines = terminal.transcript.components(separatedBy: "\r\n")
        XCTAssertTrue(lines.contains { $0.hasPrefix("step 1/3  ") && $0.contains(" s/step  ETA ") }, terminal.transcript.debugDescription)
        XCTAssertTrue(lines.contains { $0.hasPrefix("step 3/3  ") }, terminal.transcript.debugDescription)
        XCTAssertFalse(lines.contains { $0.hasPrefix("step 2/3  ") }, "not every step: \(terminal.transcript.debugDescription)")
    }

    func testNoEscapeSequencesWhenStdoutIsAPipe() throws {
        let sandbox = Sandbox()
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        let terminal = try PseudoTerminal([], in: sandbox, stdoutPipe: fds[1], da1Reply: "\u{1B}[?62;4;22c")
        close(fds[1])
        terminal.type("prompt a fox\rset\rquit\r")
        let output = FileHandle(fileDescriptor: fds[0], closeOnDealloc: true).readDataToEndOfFile()
        XCTAssertEqual(terminal.waitForExit(), 0)
        let text = String(decoding: output, as: UTF8.self)
        XCTAssertFalse(text.contains("\u{1B}"), text.debugDescription)
        XCTAssertTrue(text.contains("preview         auto (off: stdout is not a terminal)"), text)
        XCTAssertEqual(terminal.da1Queries, 0, "no query is sent when stdout is not a terminal")
    }

    func testAnInteractiveSessionIsRecordedAndReplays() throws {
        let sandbox = Sandbox()
        let terminal = try start(sandbox)
        for line in ["prompt a lighthouse # at dusk", "set steps 12", "set stpes 3", "seed random", "set size 512x768"] {
            terminal.type(line + "\r")
            terminal.expect("sd> ")
        }
        quit(terminal)
        let transcripts = sandbox.files(in: "sessions")
        XCTAssertEqual(transcripts.count, 1)
        let path = "sessions/" + (transcripts.first ?? "")
        let text = try String(contentsOfFile: sandbox.path + "/" + path, encoding: .utf8)
        let commands = text.split(separator: "\n").filter { !$0.hasPrefix("# sdrepl") && !$0.hasPrefix("# replay") && !$0.hasPrefix("# numerics") }
        XCTAssertEqual(commands, [
            "prompt a lighthouse # at dusk", "set steps 12", "# set stpes 3",
            "# error: set: unknown setting 'stpes' (did you mean 'steps'?)", "# seed random", "set size 512x768",
        ])
        let replay = try PipeRun(["run", path, "--no-record"], in: sandbox)
        XCTAssertEqual(replay.status, 0, replay.stderr)
        XCTAssertEqual(replay.stderr, "")
    }

    func testNoRecordAndSessionsDirectory() throws {
        let sandbox = Sandbox()
        let unrecorded = try start(sandbox, arguments: ["--no-record"])
        quit(unrecorded)
        XCTAssertEqual(sandbox.files(in: "sessions"), [])
        let elsewhere = try start(sandbox, arguments: ["--sessions", "log/s"])
        quit(elsewhere)
        XCTAssertEqual(sandbox.files(in: "log/s").count, 1)
    }

    // Ctrl-C during `gen`, the progress bar and sixel images on the fixture model: EndToEndTests.
}
