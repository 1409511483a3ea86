/// The version of sdrepl and its engine, written into every image's recipe.
public enum SDReplVersion {
    public static let string = "0.2.0"
}
