import Foundation

/// Everything that can go wrong while turning an image into a file or a file back into a recipe.
///
/// Each case's `description` is one line: what failed, where, and what the user can do about it.
public enum ImagingError: Error, Equatable, CustomStringConvertible {
    /// The pixel buffer does not describe an image (a programmer-facing size mismatch).
    case invalidImage(String)
    /// The output directory does not exist and could not be created.
    case cannotCreateDirectory(path: String, reason: String)
    /// Writing a file failed (no permission, disk full, I/O error). Nothing was left behind.
    case writeFailed(path: String, reason: String, errno: Int32?)
    /// `save PATH` named a file that already exists; files are never overwritten.
    case fileExists(path: String)
    /// The file name's extension is none of .png, .jpg, .jpeg (and there is one).
    case unsupportedFormat(path: String)
    /// libpng or libjpeg refused to encode.
    case encodeFailed(format: String, message: String)
    /// A file could not be read or decoded.
    case readFailed(path: String, reason: String)
    /// A metadata block is larger than its container allows (a JPEG segment holds 65533 bytes).
    case metadataTooLarge(what: String, bytes: Int, limit: Int)
    /// The image carries no recipe we understand.
    case noRecipe(path: String)
    /// A line of a styles CSV file could not be parsed.
    case stylesFile(path: String, line: Int, message: String)
    /// libsixel failed.
    case sixelFailed(String)

    public var description: String {
        switch self {
        case .invalidImage(let message):
            return "invalid image: \(message)"
        case .cannotCreateDirectory(let path, let reason):
            return "cannot create the folder \(path): \(reason); choose another with 'set outdir DIR', or 'save PATH'"
        case .writeFailed(let path, let reason, let code):
            let hint: String
            switch code {
            case ENOSPC?, EDQUOT?:
                hint = "free some space, or 'save PATH' on another disk"
            case EACCES?, EPERM?, EROFS?:
                hint = "choose a writable place with 'set outdir DIR' or 'save PATH'"
            default:
                hint = "try another place with 'set outdir DIR' or 'save PATH'"
            }
            return "could not write \(path): \(reason) (nothing partial was left); \(hint)"
        case .fileExists(let path):
            return "\(path) exists already and images are never overwritten: give another name, or 'save' alone for a new one"
        case .unsupportedFormat(let path):
            return "cannot tell the format of \(path): end the name in .png, .jpg or .jpeg, or leave the extension out for both"
        case .encodeFailed(let format, let message):
            return "\(format) encoding failed: \(message)"
        case .readFailed(let path, let reason):
            return "could not read \(path): \(reason)"
        case .metadataTooLarge(let what, let bytes, let limit):
            return "the \(what) is \(bytes) bytes, more than the \(limit) a JPEG segment can hold: "
                + "shorten the prompt or save as PNG"
        case .noRecipe(let path):
            return "\(path) carries no generation recipe (no `parameters` text, sdrepl keys or EXIF UserComment)"
        case .stylesFile(let path, let line, let message):
            return "\(path):\(line): \(message)"
        case .sixelFailed(let message):
            return "sixel encoding failed: \(message)"
        }
    }
}
