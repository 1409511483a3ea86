import FileErrors
import Foundation
import Imaging

/// The labelled sheet of the last `grid`: what `save` writes right after it.
public struct GridSheet: Sendable {
    /// One cell on the sheet: its image number, its labels (X, Y, Z) and its A1111 infotext.
    public struct Cell: Sendable {
        public let index: Int
        public let labels: [String]
        public let parameters: String
    }

    public let image: RGBImage
    public let cells: [Cell]
    /// The `grid` line that made it, as the transcript replays it.
    public let line: String
    /// The first cell, whose recipe is the sheet's A1111 `parameters`, as A1111 stores its grid's.
    public let first: SessionImage
    public var savedPaths: [String] = []

    /// The PNG key that lists every cell's recipe: a JSON object `{"grid": LINE, "cells": [{"image":
    /// N, "labels": [X, Y, Z], "parameters": INFOTEXT}, …]}`.
    public static let cellsKey = "GridCells"

    /// The JSON text stored under `cellsKey`.
    public var cellsJSON: String {
        let cells = cells.map { ["image": $0.index, "labels": $0.labels, "parameters": $0.parameters] as [String: Any] }
        return (try? ImageMetadata.settingsJSON(["grid": line, "cells": cells])) ?? "{}"
    }
}

extension ImageSaver {
    /// Writes a grid's sheet; savers without image files (test doubles) write nothing.
    public func saveSheet(_ sheet: GridSheet, to path: String?, output: OutputSettings) throws -> SavedFiles {
        SavedFiles(paths: [])
    }
}

extension ImagingSaver {
    /// Writes the sheet with the first cell's metadata, as its saved image has it (so `load` of the
    /// sheet gives the first cell), and every cell's recipe under `GridSheet.cellsKey` (PNG only: a
    /// JPEG keeps the first cell's). Without a path, a PNG in `outdir/grids`, named as images are.
    public func saveSheet(_ sheet: GridSheet, to path: String?, output: OutputSettings) throws -> SavedFiles {
        var metadata = try metadata(for: sheet.first)
        metadata.extraPNGChunks = [.text(GridSheet.cellsKey, sheet.cellsJSON)]
        let outdir = URL(fileURLWithPath: output.outdir)
        if let path, namesAFolder(path) {
            let writer = ImageWriter(directory: URL(fileURLWithPath: path), formats: [.png])
            return SavedFiles(paths: try writer.save(sheet.image, metadata: metadata).map(\.path))
        }
        if let path, (path as NSString).pathExtension.isEmpty {
            let writer = ImageWriter(directory: outdir, jpegQuality: output.jpegQuality)
            return SavedFiles(paths: try writer.save(sheet.image, metadata: metadata, stem: URL(fileURLWithPath: path))
                .map { path + "." + $0.pathExtension })
        }
        if let path {
            try ImageWriter(directory: outdir, jpegQuality: output.jpegQuality).save(sheet.image, metadata: metadata, to: URL(fileURLWithPath: path))
            return SavedFiles(paths: [path])
        }
        let writer = ImageWriter(directory: outdir.appendingPathComponent("grids"), formats: [.png])
        return SavedFiles(paths: try writer.save(sheet.image, metadata: metadata).map(\.relativePath))
    }
}

extension Session {
    /// Draws the sheet of the cells made (a cell not made stays white), shows it, keeps it for
    /// `save` and autosaves it when autosave is on.
    func makeSheet(_ spec: GridSpec, cells: [GridCell], made: [Int: SessionImage]) throws {
        let font = try labelFont(for: "grid")
        let columns = spec.x.values.indices.map(spec.x.label)
        let rows = spec.y.map { axis in axis.values.indices.map(axis.label) } ?? []
        let pages = (0..<(spec.z?.values.count ?? 1)).map { z in
            LabelledGrid.Page(title: spec.z?.label(z), cells: (0..<max(rows.count, 1)).map { y in
                columns.indices.map { x in
                    cells.firstIndex { $0.x == x && $0.y == y && $0.z == z }.flatMap { made[$0]?.pixels }
                }
            })
        }
        let image: RGBImage
        do {
            image = try LabelledGrid(columnLabels: columns, rowLabels: rows, pages: pages, font: font).render()
        } catch {
            throw ScriptError.generation("cannot draw the sheet: \(error)", command: "grid")
        }
        let records = made.keys.sorted().compactMap { position -> GridSheet.Cell? in
            guard let entry = made[position] else { return nil }
            let cell = cells[position]
            let labels = [spec.x.label(cell.x)] + (spec.y.map { [$0.label(cell.y)] } ?? []) + (spec.z.map { [$0.label(cell.z)] } ?? [])
            let recipe = ImagingSaver.recipe(for: entry.request, model: entry.model, modelHash: nil)
            return GridSheet.Cell(index: entry.index, labels: labels, parameters: Infotext.render(recipe))
        }
        guard let first = made.keys.min().flatMap({ made[$0] }) else { return }
        history.sheet = GridSheet(image: image, cells: records, line: spec.replayLine(cells: made.count < cells.count ? made.count : nil),
                                  first: first)
        io.emit(.picture(image, caption: "grid: \(records.count) cell\(records.count == 1 ? "" : "s") on a \(image.width)x\(image.height) sheet",
                         preview: settings.output.preview))
        if settings.output.autosave { try saveSheet(to: "") }
    }

    /// `save [PATH]` right after `grid`: the sheet.
    func saveSheet(to argument: String) throws {
        guard let sheet = history.sheet, !savingDisabled, let saver = components.saver else { return }
        if argument.isEmpty && !sheet.savedPaths.isEmpty {
            io.output("grid sheet: already saved as \(sheet.savedPaths.joined(separator: " ")); 'save PATH' writes another copy")
            return
        }
        let path: String? = argument.isEmpty ? nil : argument.expandingTilde
        let saved: SavedFiles
        do {
            saved = try saver.saveSheet(sheet, to: path, output: settings.output)
        } catch {
            throw ScriptError.imageNotSaved(command: "save", reason: "the grid sheet: " + FileErrorText.reason(error))
        }
        guard !saved.paths.isEmpty else { return }
        history.sheet?.savedPaths += saved.paths
        io.output("grid sheet: saved " + saved.paths.joined(separator: " "))
    }

    /// `history sheet`: the session's images as numbered thumbnails in one picture.
    func showHistorySheet() throws {
        guard !images.isEmpty else {
            io.output("no images yet")
            return
        }
        let font = try labelFont(for: "history")
        let image: RGBImage
        do {
            image = try ThumbnailSheet(font: font).render(images.map { ($0.index, $0.pixels) })
        } catch {
            throw ScriptError.generation("cannot draw the sheet: \(error)", command: "history")
        }
        io.emit(.picture(image, caption: "history: \(images.count) image\(images.count == 1 ? "" : "s") on a \(image.width)x\(image.height) sheet",
                         preview: settings.output.preview))
    }

    func labelFont(for command: String) throws -> Font {
        do {
            return try Font()
        } catch {
            throw ScriptError.unavailable(command: command, reason: "\(error)")
        }
    }
}
