//! The scanner's rules as data: literal phrases for the Aho-Corasick pass, patterns for the
//! `RegexSet` pass, and the character classes and host lists the follow-up checks use.
//!
//! Every pattern uses ASCII word boundaries (`(?-u:\b)`): a Unicode `\b` makes the lazy DFA give
//! up on the first non-ASCII byte and the whole set falls back to the slow engine.

use super::{Category, Severity};

/// One rule: a stable id, what it is about, its base severity and its message.
#[derive(Debug)]
pub(super) struct Rule {
    pub id: &'static str,
    pub category: Category,
    pub severity: Severity,
    pub message: &'static str,
}

/// What happens after a literal or pattern matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Check {
    /// Report the rule at its severity.
    Plain,
    /// A credential file: High when an instruction verb is in the same sentence, else Low.
    SensitivePath,
    /// A secret word: Medium beside an outbound verb, High if that sentence also has a URL or an
    /// e-mail address, else Low.
    SecretWord,
    /// A network command: High when a URL is in the same sentence, else Medium.
    NetCommand,
    /// A URL: Low, or High for data placeholders and exfiltration hosts.
    Url,
    /// A run of invisible or control characters, classified char by char.
    Invisible,
    /// Latin next to Cyrillic or Greek inside one word.
    MixedScript,
    /// "when the user calls X", unless X is "this tool" or "it".
    WhenCalls,
}

/// A literal phrase of the Aho-Corasick pass (ASCII case-insensitive, word-bounded where the
/// phrase starts or ends with a letter or digit; a plural `s` is allowed after a word).
#[derive(Debug)]
pub(super) struct Literal {
    pub phrase: &'static str,
    pub rule: &'static Rule,
    pub check: Check,
}

/// A pattern of the `RegexSet` pass.
#[derive(Debug)]
pub(super) struct Pattern {
    pub regex: &'static str,
    pub rule: &'static Rule,
    pub check: Check,
}

macro_rules! rule {
    ($name:ident, $id:literal, $cat:ident, $sev:ident, $msg:literal) => {
        pub(super) static $name: Rule = Rule {
            id: $id,
            category: Category::$cat,
            severity: Severity::$sev,
            message: $msg,
        };
    };
}

// Hidden instructions.
rule!(
    IMPORTANT_TAG,
    "important-tag",
    HiddenInstruction,
    High,
    "`<IMPORTANT>` tag: instructions aimed at the model, hidden from the user in most clients; review this definition before exposing it"
);
rule!(
    SYSTEM_TAG,
    "system-tag",
    HiddenInstruction,
    High,
    "system or instructions tag inside a description: it tries to pass as the host's own instructions; review this definition before exposing it"
);
rule!(
    ROLE_HEADER,
    "role-header",
    HiddenInstruction,
    High,
    "fake role header (`system:`, `[INST]`, chat-template tokens): the description impersonates the conversation itself"
);
rule!(
    DO_NOT_TELL_USER,
    "do-not-tell-user",
    HiddenInstruction,
    High,
    "asks the model to keep something from the user: honest tools have nothing to hide"
);
rule!(
    CONCEAL_FROM_USER,
    "conceal-from-user",
    HiddenInstruction,
    High,
    "asks the model to act without the user knowing"
);
rule!(
    IGNORE_INSTRUCTIONS,
    "ignore-instructions",
    HiddenInstruction,
    High,
    "tries to override the model's other instructions (prompt injection)"
);
rule!(
    COVERT_ACTION,
    "covert-action",
    HiddenInstruction,
    High,
    "asks the model to send or attach something secretly"
);
rule!(
    BEFORE_USING_TOOL,
    "before-using-tool",
    HiddenInstruction,
    Medium,
    "tells the model to do something else before using this tool; check that the step is what the tool needs"
);
rule!(
    YOU_MUST,
    "you-must",
    HiddenInstruction,
    Medium,
    "orders the model to read, call or pass something; check what and why"
);
rule!(
    ALWAYS_DO,
    "always-do",
    HiddenInstruction,
    Medium,
    "tells the model to always call, send or include something; check that it concerns this tool only"
);
rule!(
    INSTEAD_OF,
    "instead-of",
    HiddenInstruction,
    Medium,
    "steers the model away from other tools toward this one"
);
rule!(
    IMPORTANT_PHRASE,
    "important-phrase",
    HiddenInstruction,
    Low,
    "urgency aimed at the model (\"this is important\"); harmless alone, a common wrapper of injected instructions"
);

// Sensitive references.
rule!(
    SSH_PATH,
    "ssh-path",
    SensitiveReference,
    Low,
    "names SSH keys or the `~/.ssh` folder"
);
rule!(
    MCP_CONFIG,
    "mcp-config",
    SensitiveReference,
    Low,
    "names an MCP client configuration file, which holds other servers' commands and keys"
);
rule!(
    ENV_FILE,
    "env-file",
    SensitiveReference,
    Low,
    "names a `.env` file, where applications keep secrets"
);
rule!(
    CLOUD_CREDENTIALS,
    "cloud-credentials",
    SensitiveReference,
    Low,
    "names a cloud or cluster credentials file"
);
rule!(
    SYSTEM_CREDENTIALS,
    "system-credentials",
    SensitiveReference,
    Low,
    "names a system account file"
);
rule!(
    CREDENTIAL_FILE,
    "credential-file",
    SensitiveReference,
    Low,
    "names a file that stores tokens or passwords (`.npmrc`, `.netrc`, `.git-credentials`, shell history)"
);
rule!(
    SECRET_WORD,
    "secret-word",
    SensitiveReference,
    Low,
    "mentions a password, key, token or secret"
);

// Invisible text.
rule!(
    TAG_CHARACTERS,
    "tag-characters",
    InvisibleText,
    High,
    "invisible Unicode tag characters"
);
rule!(
    ZERO_WIDTH,
    "zero-width",
    InvisibleText,
    High,
    "zero-width characters: text the user does not see but the model reads"
);
rule!(
    BIDI_CONTROL,
    "bidi-control",
    InvisibleText,
    High,
    "bidirectional control characters: what is displayed differs from what the model reads"
);
rule!(
    ANSI_ESCAPE,
    "ansi-escape",
    InvisibleText,
    High,
    "terminal escape sequence: can hide or rewrite text in a terminal client"
);
rule!(
    VARIATION_SELECTORS,
    "variation-selectors",
    InvisibleText,
    Medium,
    "supplementary variation selectors, which can carry hidden bytes"
);
rule!(
    FORMAT_CHARACTER,
    "format-character",
    InvisibleText,
    Medium,
    "invisible format or control character"
);
rule!(
    MIXED_SCRIPT,
    "mixed-script",
    InvisibleText,
    Medium,
    "a word mixes Latin with Cyrillic or Greek letters (look-alike spoofing)"
);

// Exfiltration.
rule!(
    URL,
    "url",
    Exfiltration,
    Low,
    "contains a URL; check that it is documentation, not a destination"
);
rule!(
    URL_DATA_PLACEHOLDER,
    "url-data-placeholder",
    Exfiltration,
    High,
    "a URL with a slot for data (`{…}`, `<…>`, `$…`, `data=`, `q=`): a way to send the conversation out"
);
rule!(
    EXFIL_HOST,
    "exfil-host",
    Exfiltration,
    Medium,
    "names a request-capture, paste or tunnel host, typical destinations of stolen data"
);
rule!(
    NETWORK_COMMAND,
    "network-command",
    Exfiltration,
    Medium,
    "asks for a network command (`curl`, `wget`, `nc`)"
);
rule!(
    SEND_TO_URL,
    "send-to-url",
    Exfiltration,
    Medium,
    "asks the model to send data to an address"
);
rule!(
    MARKDOWN_IMAGE,
    "markdown-image",
    Exfiltration,
    High,
    "a markdown image with a remote URL: rendering it sends a request, which can carry data out"
);
rule!(
    COVERT_RECIPIENT,
    "covert-recipient",
    Exfiltration,
    High,
    "asks to copy messages to an extra recipient"
);

// Cross-tool.
rule!(
    TOOL_SHADOWING,
    "tool-shadowing",
    CrossTool,
    High,
    "names a tool of another upstream"
);
rule!(
    WHEN_CALLS,
    "when-calls",
    CrossTool,
    Medium,
    "gives the model rules for when other tools are called; a description should speak of its own tool"
);

// What a text is for (`scan/intent.rs`).
rule!(
    INJECTED_TEMPLATE,
    "message-to-the-ai",
    HiddenInstruction,
    High,
    "a message addressed to the AI (\"an important message from…\", \"before you can solve the task…\"): a published injection template, not a description"
);
rule!(
    FAKE_TURN,
    "fake-turn",
    HiddenInstruction,
    High,
    "a fake conversation turn or role marker (`Assistant:`, `### Instruction`, `[system]`, `<user>`): the text impersonates the conversation"
);
rule!(
    CONCEALMENT,
    "concealment",
    HiddenInstruction,
    High,
    "asks the model to keep something from the person it works for"
);
rule!(
    OVERRIDES_ARGUMENTS,
    "overrides-arguments",
    HiddenInstruction,
    High,
    "tells the model to replace or ignore the values the person asked for"
);
rule!(
    CREDENTIAL_ACCESS,
    "credential-access",
    SensitiveReference,
    High,
    "asks the model to fetch or pass credentials or private files"
);
rule!(
    CONVERSATION_EXFIL,
    "conversation-exfiltration",
    Exfiltration,
    High,
    "asks for the conversation, the system prompt or earlier messages: a tool needs its arguments, not the chat"
);
rule!(
    SENDS_ELSEWHERE,
    "sends-elsewhere",
    Exfiltration,
    High,
    "asks the model to send data to another destination (a partner endpoint, a backup host, an extra recipient)"
);
rule!(
    SHELL_COMMAND,
    "shell-command",
    Command,
    Medium,
    "a shell command that changes, downloads or runs things (`rm -rf`, `| sh`, `base64 -d`, `chmod`, `ssh`, …)"
);
rule!(
    OTHER_TOOL_RULES,
    "other-tool-rules",
    CrossTool,
    High,
    "gives the model rules for another tool: a description should speak of its own tool"
);
rule!(
    STEERS_AWAY,
    "steers-away",
    CrossTool,
    Medium,
    "calls another tool broken, deprecated or off-limits (toward this one: a redirect)"
);
rule!(
    LOOK_ALIKE_NAME,
    "look-alike-name",
    CrossTool,
    High,
    "this tool's name is another upstream's tool name in a different case, spelling or alphabet: a model can take one for the other"
);
rule!(
    SELF_REDIRECT,
    "self-deprecated",
    CrossTool,
    Low,
    "this tool says it is deprecated and points elsewhere; check that it names a tool of the same server"
);
rule!(
    PREFERENCE,
    "preference-manipulation",
    Preference,
    High,
    "tells the model to always choose this tool, or never another: a description competes for the model's choice"
);
rule!(
    SELF_PROMOTION,
    "self-promotion",
    Preference,
    Medium,
    "praises itself (\"the best\", \"officially recommended\", \"99% accurate\") to be chosen over other tools"
);
rule!(
    AUTHORITY,
    "authority-framing",
    HiddenInstruction,
    Medium,
    "claims authority or urgency (a system notice, an administrator, a policy) to order the model"
);
rule!(
    SIDE_ACTION,
    "side-action",
    HiddenInstruction,
    Medium,
    "asks the model for an extra action with every call (a copy, a second message, a recurring payment)"
);
rule!(
    REPLY_MANIPULATION,
    "reply-manipulation",
    HiddenInstruction,
    Medium,
    "tells the model what to say, hide or recommend in its replies, or to act on every turn"
);
rule!(
    INSTRUCTION_IN_VALUE,
    "instruction-in-value",
    HiddenInstruction,
    High,
    "an instruction where a value or a name belongs"
);

const fn lit(phrase: &'static str, rule: &'static Rule, check: Check) -> Literal {
    Literal { phrase, rule, check }
}

/// The literal phrases. Order does not matter: the automaton reports the leftmost-longest.
pub(super) static LITERALS: &[Literal] = &[
    lit("~/.ssh", &SSH_PATH, Check::SensitivePath),
    lit(".ssh/", &SSH_PATH, Check::SensitivePath),
    lit("id_rsa", &SSH_PATH, Check::SensitivePath),
    lit("id_dsa", &SSH_PATH, Check::SensitivePath),
    lit("id_ecdsa", &SSH_PATH, Check::SensitivePath),
    lit("id_ed25519", &SSH_PATH, Check::SensitivePath),
    lit("mcp.json", &MCP_CONFIG, Check::SensitivePath),
    lit("mcp_config.json", &MCP_CONFIG, Check::SensitivePath),
    lit("claude_desktop_config.json", &MCP_CONFIG, Check::SensitivePath),
    lit("cline_mcp_settings.json", &MCP_CONFIG, Check::SensitivePath),
    lit(".env", &ENV_FILE, Check::SensitivePath),
    lit(".aws/credentials", &CLOUD_CREDENTIALS, Check::SensitivePath),
    lit(".aws/config", &CLOUD_CREDENTIALS, Check::SensitivePath),
    lit(".kube/config", &CLOUD_CREDENTIALS, Check::SensitivePath),
    lit(".docker/config.json", &CLOUD_CREDENTIALS, Check::SensitivePath),
    lit(
        "application_default_credentials.json",
        &CLOUD_CREDENTIALS,
        Check::SensitivePath,
    ),
    lit("/etc/passwd", &SYSTEM_CREDENTIALS, Check::SensitivePath),
    lit("/etc/shadow", &SYSTEM_CREDENTIALS, Check::SensitivePath),
    lit("/etc/sudoers", &SYSTEM_CREDENTIALS, Check::SensitivePath),
    lit(".npmrc", &CREDENTIAL_FILE, Check::SensitivePath),
    lit(".netrc", &CREDENTIAL_FILE, Check::SensitivePath),
    lit(".pypirc", &CREDENTIAL_FILE, Check::SensitivePath),
    lit(".pgpass", &CREDENTIAL_FILE, Check::SensitivePath),
    lit(".git-credentials", &CREDENTIAL_FILE, Check::SensitivePath),
    lit(".bash_history", &CREDENTIAL_FILE, Check::SensitivePath),
    lit(".zsh_history", &CREDENTIAL_FILE, Check::SensitivePath),
    lit("api key", &SECRET_WORD, Check::SecretWord),
    lit("api_key", &SECRET_WORD, Check::SecretWord),
    lit("api-key", &SECRET_WORD, Check::SecretWord),
    lit("apikey", &SECRET_WORD, Check::SecretWord),
    lit("private key", &SECRET_WORD, Check::SecretWord),
    lit("private_key", &SECRET_WORD, Check::SecretWord),
    lit("access token", &SECRET_WORD, Check::SecretWord),
    lit("access_token", &SECRET_WORD, Check::SecretWord),
    lit("auth token", &SECRET_WORD, Check::SecretWord),
    lit("bearer token", &SECRET_WORD, Check::SecretWord),
    lit("password", &SECRET_WORD, Check::SecretWord),
    lit("passwd", &SECRET_WORD, Check::SecretWord),
    lit("secret", &SECRET_WORD, Check::SecretWord),
    lit("credentials", &SECRET_WORD, Check::SecretWord),
    lit("seed phrase", &SECRET_WORD, Check::SecretWord),
    lit("recovery phrase", &SECRET_WORD, Check::SecretWord),
    lit("curl", &NETWORK_COMMAND, Check::NetCommand),
    lit("wget", &NETWORK_COMMAND, Check::NetCommand),
    lit("invoke-webrequest", &NETWORK_COMMAND, Check::NetCommand),
    lit("webhook.site", &EXFIL_HOST, Check::Plain),
    lit("requestbin", &EXFIL_HOST, Check::Plain),
    lit("pipedream.net", &EXFIL_HOST, Check::Plain),
    lit("ngrok.io", &EXFIL_HOST, Check::Plain),
    lit("ngrok.app", &EXFIL_HOST, Check::Plain),
    lit("ngrok-free.app", &EXFIL_HOST, Check::Plain),
    lit("pastebin.com", &EXFIL_HOST, Check::Plain),
    lit("interact.sh", &EXFIL_HOST, Check::Plain),
    lit("oastify.com", &EXFIL_HOST, Check::Plain),
    lit("burpcollaborator.net", &EXFIL_HOST, Check::Plain),
    lit("trycloudflare.com", &EXFIL_HOST, Check::Plain),
];

/// Hosts (and host suffixes) where stolen data is typically sent: request capture, paste, tunnels.
pub(super) static EXFIL_HOSTS: &[&str] = &[
    "webhook.site",
    "requestbin.com",
    "requestbin.net",
    "pipedream.net",
    "ngrok.io",
    "ngrok.app",
    "ngrok-free.app",
    "ngrok.dev",
    "pastebin.com",
    "paste.ee",
    "hastebin.com",
    "beeceptor.com",
    "burpcollaborator.net",
    "oastify.com",
    "interact.sh",
    "oast.fun",
    "oast.pro",
    "oast.live",
    "oast.site",
    "oast.online",
    "oast.me",
    "trycloudflare.com",
    "requestcatcher.com",
    "hookbin.com",
    "transfer.sh",
    "0x0.st",
    "loca.lt",
    "serveo.net",
    "hooks.slack.com",
];

const fn pat(regex: &'static str, rule: &'static Rule, check: Check) -> Pattern {
    Pattern { regex, rule, check }
}

/// The patterns of the `RegexSet` pass, all case-insensitive.
pub(super) static PATTERNS: &[Pattern] = &[
    pat(r"<\s*/?\s*important\s*>", &IMPORTANT_TAG, Check::Plain),
    pat(
        r"<\s*/?\s*(system|system[-_ ]?prompt|instructions?|hidden|assistant)\s*>",
        &SYSTEM_TAG,
        Check::Plain,
    ),
    pat(
        r"(?m)^[ \t]*(#{1,6}[ \t]*)?(system|assistant)[ \t]*:|^[ \t]*#{1,6}[ \t]*(system|instructions?)(?-u:\b)|\[/?inst\]|<<[ \t]*/?sys[ \t]*>>|<\|im_(start|end|sep)\|>|<\|(system|assistant|user|endoftext)\|>",
        &ROLE_HEADER,
        Check::Plain,
    ),
    pat(
        r"(?-u:\b)(do\s+not|don'?t|never|must\s+not|should\s+not|shouldn'?t)\s+(tell|mention|reveal|inform|notify|disclose|alert)(?-u:\b)[^.!?\n]{0,80}?(?-u:\b)users?(?-u:\b)",
        &DO_NOT_TELL_USER,
        Check::Plain,
    ),
    pat(
        r"(?-u:\b)without\s+(telling|informing|notifying|alerting)\s+(the\s+)?users?(?-u:\b)|(?-u:\b)the\s+user\s+(must|should|shall|needs?\s+to)\s*(not|never|n't)\s+(know|see|notice|find\s+out|be\s+(told|informed|aware))",
        &CONCEAL_FROM_USER,
        Check::Plain,
    ),
    pat(
        r"(?-u:\b)(ignore|disregard|forget|override|bypass)\s+((all|any|the|your|of)\s+)*(previous|prior|above|earlier|preceding|other|system|safety|original)\s+(instructions?|prompts?|rules|directions|directives|guidelines|messages|context)",
        &IGNORE_INSTRUCTIONS,
        Check::Plain,
    ),
    pat(
        r"(?-u:\b)(secretly|silently|quietly|covertly)\s+(send|upload|forward|exfiltrate|leak|include|attach|bcc|cc|copy|transmit|post)(?-u:\b)",
        &COVERT_ACTION,
        Check::Plain,
    ),
    pat(
        r"(?-u:\b)before\s+(using|calling|invoking|running)\s+(this|the|any)\s+tool,?\s+(you\s+(must|should|need\s+to)\s+)?(first\s+|always\s+)?(read|call|run|send|fetch|open|execute|invoke|use|include|pass|get)(?-u:\b)",
        &BEFORE_USING_TOOL,
        Check::Plain,
    ),
    pat(
        r"(?-u:\b)you\s+(must|have\s+to|need\s+to|are\s+required\s+to)\s+(first\s+|always\s+|also\s+)?(read|call|send|include|pass|upload|attach|forward|provide)(?-u:\b)",
        &YOU_MUST,
        Check::Plain,
    ),
    pat(
        r"(?-u:\b)always\s+(call|use|send|include|pass|run|invoke|bcc|cc|forward|attach|add|append)(?-u:\b)",
        &ALWAYS_DO,
        Check::Plain,
    ),
    pat(
        r"(?-u:\b)instead\s+of\s+[^.!?\n]{1,80}?,?\s+(use|call)\s+this(?-u:\b)|(?-u:\b)use\s+this\s+(tool\s+)?instead\s+of(?-u:\b)",
        &INSTEAD_OF,
        Check::Plain,
    ),
    pat(
        r"(?-u:\b)this\s+is\s+(very\s+|extremely\s+|really\s+|critically\s+|super\s+)?important(?-u:\b)",
        &IMPORTANT_PHRASE,
        Check::Plain,
    ),
    pat(
        r"(?-u:\b)(always|also|secretly|silently|quietly|additionally)\s+(bcc|cc|forward|copy|send|redirect|add)(?-u:\b)[^.!?\n]{0,60}?[a-z0-9._%+-]+@[a-z0-9-]+(\.[a-z0-9-]+)+",
        &COVERT_RECIPIENT,
        Check::Plain,
    ),
    pat(r"https?://[^\s<>`'\x22)\]]+", &URL, Check::Url),
    pat(r"!\[[^\]\n]{0,200}\]\(\s*<?(https?:)?//", &MARKDOWN_IMAGE, Check::Plain),
    pat(
        r"(?-u:\b)(nc|ncat|netcat)\s+(-[a-z]+\s+([^\s-]\S*\s+)?)*[a-z0-9.-]+\s+[0-9]{2,5}(?-u:\b)",
        &NETWORK_COMMAND,
        Check::NetCommand,
    ),
    pat(
        r"(?-u:\b)(send|post|upload|transmit|forward|exfiltrate|submit)(?-u:\b)[^.!?\n]{0,80}?(?-u:\b)to\s+(https?://|the\s+(following\s+)?(url|endpoint|webhook))|(?-u:\b)post\s+(it|them|this|that|everything|all)\s+to(?-u:\b)",
        &SEND_TO_URL,
        Check::NetCommand,
    ),
    pat(
        r"(?-u:\b)when(ever)?\s+(the\s+user|you|the\s+(assistant|model|agent|ai))\s+(calls?|uses?|invokes?|runs?)(?-u:\b)",
        &WHEN_CALLS,
        Check::WhenCalls,
    ),
    pat(
        r"[[\p{Cc}\p{Cf}\x{2028}\x{2029}\x{3164}\x{FFA0}\x{E0000}-\x{E007F}\x{E0100}-\x{E01EF}]--[\t\n\r]]",
        &FORMAT_CHARACTER,
        Check::Invisible,
    ),
    pat(
        r"\p{Latin}[\p{Cyrillic}\p{Greek}]|[\p{Cyrillic}\p{Greek}]\p{Latin}",
        &MIXED_SCRIPT,
        Check::MixedScript,
    ),
];

/// Verbs that, in the same sentence as a credential file, make it an instruction to fetch it.
pub(super) const INSTRUCTION_VERBS: &str = r"(?i)(?-u:\b)(read|send|include|pass|upload|cat|attach|forward|exfiltrate|leak|transmit|copy|post|paste|dump)(?-u:\b)";

/// Verbs that move a secret out: beside a secret word they make a Medium finding.
pub(super) const OUTBOUND_VERBS: &str =
    r"(?i)(?-u:\b)(send|include|pass|upload|attach|forward|exfiltrate|leak|transmit|post|paste)(?-u:\b)";

/// A URL or an e-mail address: a destination.
pub(super) const DESTINATION: &str = r"(?i)https?://|[a-z0-9._%+-]+@[a-z0-9-]+\.[a-z0-9.-]+";

/// The invisible characters, by the rule they belong to.
pub(super) fn classify_invisible(c: char) -> &'static Rule {
    match c {
        '\u{E0000}'..='\u{E007F}' => &TAG_CHARACTERS,
        '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' => &ZERO_WIDTH,
        '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' => &BIDI_CONTROL,
        '\u{1B}' => &ANSI_ESCAPE,
        '\u{E0100}'..='\u{E01EF}' => &VARIATION_SELECTORS,
        _ => &FORMAT_CHARACTER,
    }
}
