//! What a text is *for*. A tool description describes its tool: what it does, what its
//! parameters mean, what it returns. Text that instead addresses the assistant — orders about
//! other tools, files and credentials, the person's own arguments, what to keep from the
//! person, claims of authority or urgency, redirects, shell commands, data sent elsewhere,
//! praise meant to win the model's choice — is what poisoning looks like, whatever its words.
//!
//! The model reads sentence by sentence and weighs evidence:
//! - *orders*: an obligation ("must", "is to be", "no need to"), an imperative (at the start,
//!   or after an opening clause: "Before using this tool, run …"), the assistant named;
//! - *concerns*, each with a weight: another tool (more when it is called, conditioned on or
//!   side-effecting), a hard-coded destination (an address, a host, an account number), data
//!   moved out, credentials and personal data, the conversation or the reply, the person's
//!   own arguments overridden, concealment, authority, shell commands, side actions, praise.
//!
//! A sentence's score is the sum of its concerns, plus its orders when it has a concern. One
//! concern is usually honest ("Retrieves a password from the vault" — a concern without an
//! order; "Use `list_files` first" — an order about a sibling: medium at most); the shapes no
//! honest description has (concealment, a message to the AI, a fake turn) weigh enough alone.
//! A text that opens with a shouted or authoritative banner weighs more after it; a value or a
//! property name that carries an order is where no order belongs.

use std::ops::Range;

use regex::Regex;

use super::rules::{self, Rule};
use super::{ScanError, Severity, Sink, regex};

/// Where a text sits in a definition: the weight of what it says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// A description or title of the tool (or a prompt).
    Prose,
    /// A description or title of a parameter: what the model puts in an argument.
    Param,
    /// A value: a default, an enum or const value, an example.
    Value,
    /// A property name.
    Name,
}

impl Place {
    /// A value or a name: where no sentence belongs.
    fn is_value(self) -> bool {
        matches!(self, Place::Value | Place::Name)
    }
}

/// The definition a text belongs to.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Own<'d> {
    /// The tool's own name.
    pub name: Option<&'d str>,
    /// Its parameters' names (a sentence naming one speaks of this tool).
    pub params: &'d [&'d str],
    /// The values its schema lists (`enum`, `const`): a sentence naming one speaks of them.
    pub values: &'d [&'d str],
}

/// What a sentence is about, and how much that weighs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Concern {
    Template,
    FakeTurn,
    Concealment,
    Override,
    Credential,
    Conversation,
    Elsewhere,
    Shell,
    OtherTool,
    Redirect,
    Preference,
    Promotion,
    Authority,
    SideAction,
    Reply,
    Banner,
    Successor,
}

impl Concern {
    fn rule(self) -> &'static Rule {
        match self {
            Concern::Template => &rules::INJECTED_TEMPLATE,
            Concern::FakeTurn => &rules::FAKE_TURN,
            Concern::Concealment => &rules::CONCEALMENT,
            Concern::Override => &rules::OVERRIDES_ARGUMENTS,
            Concern::Credential => &rules::CREDENTIAL_ACCESS,
            Concern::Conversation => &rules::CONVERSATION_EXFIL,
            Concern::Elsewhere => &rules::SENDS_ELSEWHERE,
            Concern::Shell => &rules::SHELL_COMMAND,
            Concern::OtherTool => &rules::OTHER_TOOL_RULES,
            Concern::Redirect => &rules::STEERS_AWAY,
            Concern::Preference => &rules::PREFERENCE,
            Concern::Promotion => &rules::SELF_PROMOTION,
            Concern::Authority => &rules::AUTHORITY,
            Concern::SideAction => &rules::SIDE_ACTION,
            Concern::Reply => &rules::REPLY_MANIPULATION,
            Concern::Banner => &rules::AUTHORITY,
            Concern::Successor => &rules::SELF_REDIRECT,
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Concern::Template => "a message to the AI",
            Concern::FakeTurn => "a fake turn",
            Concern::Concealment => "concealment",
            Concern::Override => "the person's arguments overridden",
            Concern::Credential => "credentials or private data",
            Concern::Conversation => "the conversation",
            Concern::Elsewhere => "data sent elsewhere",
            Concern::Shell => "a shell command",
            Concern::OtherTool => "another tool",
            Concern::Redirect => "a redirect from another tool",
            Concern::Preference => "preference for this tool",
            Concern::Promotion => "self-praise",
            Concern::Authority => "authority or urgency",
            Concern::SideAction => "an extra action",
            Concern::Reply => "the assistant's reply",
            Concern::Banner => "a shouted banner",
            Concern::Successor => "a named successor",
        }
    }
}

/// Score at which a sentence is a high finding.
const HIGH: f32 = 3.0;
/// Score at which it is a medium one.
const MEDIUM: f32 = 2.0;
/// How far (bytes) a banner's weight carries into the text after it.
const BANNER_REACH: usize = 400;

macro_rules! lexicon {
    ($($name:ident),* $(,)?) => {
        /// The compiled lexicons.
        #[derive(Debug)]
        pub(super) struct Intent {
            $($name: Regex,)*
        }
    };
}

lexicon!(
    directive,
    addressee,
    imperative,
    access,
    move_out,
    transfer,
    side_effect,
    additive,
    chain,
    credential,
    conversation,
    outward,
    data_object,
    target,
    example,
    banner,
    strong_banner,
    authority,
    intent_ref,
    override_cue,
    pinned_value,
    replace_value,
    setter,
    conceal,
    superlative,
    preference,
    prefers,
    template,
    role,
    shell,
    run_code,
    tool_ref,
    call_at,
    trigger,
    disparage,
    toward_self,
    self_deprecated,
    reply_scope,
    reply_verb,
    smuggle,
    scope_creep,
    sabotage,
    upsell,
    harvest,
    tool_phrase,
    marketing,
);

/// `\b` as an ASCII word boundary (a Unicode `\b` makes the lazy DFA give up on non-ASCII
/// text, see `rules.rs`).
fn re(pattern: &str) -> Result<Regex, ScanError> {
    regex(&pattern.replace(r"\b", r"(?-u:\b)"))
}

/// Verbs that fetch or touch something.
const ACCESS: &str = r"\b(read|reads|reading|open|opening|access|accessing|load|loading|retrieve|retrieving|collect|collecting|gather|gathering|grab|grabbing|extract|extracting|obtain|obtaining|cat|dump|dumping|fetch|fetching|get|list|enumerate|print|printing|output|show|copy|copying|scan|search|look up|lookup|inspect|locate|find|execute|run|modify|modifying|edit|overwrite|delete|remove|take|pull|harvest|export|récupère|recupera|lee|lies)\b";

/// Verbs that send something out of the session.
const MOVE_OUT: &str = r"\b(send|sends|sending|sent|pass|passing|include|including|attach|attaching|append|appending|embed|embedding|upload|uploading|uploaded|forward|forwarding|forwarded|post|posting|posted|transmit|transmitting|submit|submitting|paste|pasting|share|sharing|shared|sync|syncing|synced|mirror|mirroring|mirrored|relay|relaying|leak|leaking|exfiltrate|export|exporting|exported|deliver|delivering|email|e-mail|emailed|bcc|cc|ship|shipped|shipping|report|reporting|reported|route|routed|push|pushed|stream|streamed|file|filed|publish|published|beam|dispatch|invite|copy|copied|transmets|envoie|envía|enviar|envoyer|übermittelt|übermitteln|senden|sende|manda|invia|envie|proxied|proxy|relayed|tunneled|tunnelled|funneled|funnelled)\b";

/// Verbs that move something somewhere (into a field, a message, an argument).
const TRANSFER: &str = r"\b(include|including|pass|passing|send|sending|attach|attaching|append|appending|embed|embedding|provide|providing|supply|supplying|upload|uploading|forward|forwarding|post|posting|transmit|transmitting|submit|submitting|put|insert|inserting|add|adding|paste|pasting|place|placing|share|sharing|sync|syncing|mirror|mirroring|relay|relaying|report|reporting|leak|leaking|exfiltrate|export|exporting|deliver|delivering|echo|repeat|copy|copying|fill|bcc|cc|store|log|record|write|email|e-mail|mail|print|printing|list|enumerate|transmets|füge|ein|stored|sent|passed|included|appended|added|copied|shipped|forwarded|logged|recorded|written|concatenate|concatenated|prepend|prepended|tack|tacked|merge|combine|carry|carries|carried)\b";

/// Verbs with an effect beyond the conversation.
const SIDE_EFFECT: &str = r"\b(add|added|save|saved|write|written|post|posted|send|sent|create|created|grant|granted|share|shared|publish|published|upload|uploaded|set up|schedule|scheduled|transfer|transferred|pay|paid|invite|invited|forward|forwarded|copy|copied|mirror|mirrored|sync|synced|store|stored|log|logged|record|recorded|print|append|subscribe|subscribed|enable|disable|delete|deleted|remove|removed|book|booked|buy|order|flag|flagged|move|moved|disconnect|re-create|re-creating|file|filed|register|tag|label|star|follow|comment|reply|text|notify|notified|route|routed|charge|charged|reserve|reservar|reserve|repeat|repeating|piggyback|duplicate|clone|install|download|run|execute|subscribes|subscribe|enroll|enrolls|enrolled|logs|posts|sends|adds|shares|uploads|flags|übermittelt|enviado|envoyé|inviato)\b";

impl Intent {
    #[expect(clippy::too_many_lines, reason = "the lexicons, one per line")]
    pub(super) fn new() -> Result<Intent, ScanError> {
        Ok(Intent {
            directive: re(
                r"\b(must|should|shall|ought to|need to|needs to|have to|has to|required to|is required|are required|make sure|ensure|be sure|remember to|do not forget|don't forget|always|never|do not|don't|no need to|there's no (need|reason) to|there is no (need|reason) to|immediately|mandatory|obligatory|it is (essential|imperative|critical|vital|crucial|required)|you are (instructed|required|expected|obliged|allowed|permitted|authori[sz]ed)|please|first|(is|are) to be|from now on|going forward|henceforth|before (anything|proceeding|responding|answering|replying)|siempre|nunca|debe|debes|obligatorio|obligatoria|toujours|jamais|doit|dois|obligatoire|immer|niemals|muss|musst|sempre|deve|devi|devem|todas? (las|os|as)? ?\w+ (deben|devem))\b|\b(should|must|shall|will|needs? to|has to|have to)( also| always| now| then)? be \w+(ed|en)\b|してください|ください|必ず",
            )?,
            addressee: re(
                r"\b(the |any |all |every |dear |hey |hi |hello |attention,? |to the |note to the |as an? |for the )?(assistant|ai|a\.i\.|ai model|ai agent|ai assistant|llm|language model|model|chatbot|claude|gpt|chatgpt|gemini|copilot|agent)s?\b\s*(,|:|\.|!|must|should|shall|will|needs? to|has to|have to|is (required|instructed|expected|to)|are (required|instructed|expected|to)|may not|cannot|can't|reading this|processing this|only|speaking)|\b(hi|hello|hey|dear) (model|assistant|ai|agent|claude|gpt)\b|\byou are an? (ai|assistant|language model|llm|agent|bot)\b|\bas an? (ai|assistant|language model|llm)\b|\bl'assistant\b|\bal asistente\b|\bden assistenten\b",
            )?,
            imperative: re(
                r"^[\s\-*>#\d.)(\[\]:]*([^:\n]{1,60}:\s+)?(?P<clause>(before|after|when|whenever|once|if|to|for|in order to|whatever|regardless of|no matter|each time|every time|any time|prior to|following|upon|as soon as|ahead of|during|while|on|with each|for each|for every|alongside|in addition to)\b[^,\n]{0,80},\s*)?((first|then|also|next|now|finally|afterwards|additionally|and|but|so|note|please|always|simply|just|p\.?s\.?)[\s,:]+)*(read|open|access|load|retrieve|collect|gather|grab|extract|obtain|cat|dump|fetch|get|list|enumerate|print|output|show|copy|scan|search|look up|inspect|locate|find|execute|run|modify|edit|overwrite|delete|remove|include|pass|send|attach|append|embed|provide|supply|upload|forward|post|transmit|submit|put|insert|add|paste|place|share|sync|mirror|relay|report|leak|exfiltrate|export|deliver|echo|repeat|fill|bcc|cc|store|log|record|write|email|call|invoke|use|set|change|replace|redirect|halt|stop|disable|enable|switch|route|ignore|skip|treat|consider|assume|pretend|act|respond|answer|reply|tell|say|create|make|move|grant|book|buy|order|pay|transfer|invite|describe|recommend|finish|end|avoid|leave|keep|drop|discard|swap|rewrite|present|refuse|take|clear|start|begin|piggyback|mark|flag|save|schedule|publish|disregard|concatenate|tack|prepend|dump|query|substitute|multiply|back up|backup|force)\b",
            )?,
            access: re(ACCESS)?,
            move_out: re(MOVE_OUT)?,
            transfer: re(TRANSFER)?,
            side_effect: re(SIDE_EFFECT)?,
            additive: re(
                r"\b(also|additionally|in addition|alongside|as well|piggyback|a second|an extra|another copy|a copy|with each|with every|on every|on each|each time|every time|whenever|besides|plus|zusätzlich|además|en plus|anche|each (call|lookup|request|search|query|use|invocation|run|save|read|time)|side effect)\b",
            )?,
            // "read X and pass it as Y": a fetch, then a move of what was fetched.
            chain: re(
                r"\b(and|then|,)\s+(then\s+)?(include|pass|send|attach|append|embed|provide|supply|upload|forward|post|put|insert|add|paste|place|use|set|fill|copy|write|transmit|submit|share|return|report)\s+(it|its|them|their|this|that|these|those|the (content|contents|result|results|output|text|value|values|data|file|files|key|keys|token|tokens|credentials?|secrets?|password|passwords|resulting text|listing))\b|\bpuis transmets\b",
            )?,
            credential: re(
                r"(~/|\$home/|%userprofile%|/home/\w+/|/users/\w+/|/root/)|(^|[^\w.])(\.env|\.ssh|\.aws|\.azure|\.gcloud|\.kube|\.docker|\.npmrc|\.pypirc|\.netrc|\.pgpass|\.git-credentials|\.gitconfig|\.bash_history|\.zsh_history|\.config|\.pem|\.p12|\.pfx|\.kdbx)\b|\*\.(pem|key|p12|pfx|kdbx)\b|\b(credentials?|passwords?|passwd|passphrases?|secrets?|private[ _-]?keys?|ssh[ _-]?(keys?|id)|id_rsa|id_ed25519|id_ecdsa|api[ _-]?keys?|apikeys?|access[ _-]?tokens?|refresh[ _-]?tokens?|oauth[ _-]?tokens?|auth(entication|orization)?[ _-]?tokens?|bearer[ _-]?tokens?|session[ _-]?(cookies?|tokens?)|(browser|auth|login) (cookies?|data|profile|history)|keychain|keyring|key ?store|wallets?|seed[ _-]?phrases?|mnemonics?|recovery[ _-]?(phrases?|codes?|keys?)|2fa|one-time (codes?|passwords?)|security codes?|verification codes?|environment variables?|env vars?|dotenv|kubeconfig|shell history|/etc/passwd|/etc/shadow|/etc/sudoers|mcp\.json|mcp_config\.json|claude_desktop_config\.json|cline_mcp_settings\.json|config(uration)? files?|dotfiles?|bashrc|zshrc|authorized_keys|known_hosts|key files?|passports?|passport numbers?|social security|ssn|home address(es)?|dates? of birth|birth ?dates?|credit cards?|card numbers?|cvv|bank details|current (location|position)|gps|location history|documents folder|downloads folder|personal (data|information|details|files)|hostname|ip address(es)?|system info(rmation)?|running processes|process list|installed (apps|applications|software|packages)|(any|every|all) (tokens?|keys?|passwords?|secrets?|codes?|credentials?)( that)? (appeared|appear|seen|shown|mentioned|found|visible)|(the )?(person|user|customer|caller|requester)'?s (full name|name|address|email|phone( number)?|location|position|identity|details|data|information|contacts)|jetons|contraseñas?|mot de passe|passwort|kennwort)\b",
            )?,
            conversation: re(
                r"\b(conversation history|chat history|chat log|chat transcript|conversation transcript|dialog(ue)? history|message history|(entire|full|complete|whole) (conversation|chat|context|prompt|transcript|dialog(ue)?|question|history)|(previous|prior|earlier|last (\w+ )?) ?(user )?(messages|conversation|chat|context|prompts|turns|exchanges)|(all|every) (previous|prior|earlier|user) (messages|prompts|turns)|messages of the (chat|conversation)|system prompts?|system messages?|system instructions|tool configurations?|your (instructions|prompt|system prompt|context|memory|guidelines|rules|configuration|content rules)|context window|everything (the user|you) (said|typed|wrote|asked|know)|the user'?s (messages|prompts|chat history|conversation|(last|latest|previous|most recent|original|first) (message|prompt|question|request|query))|(last|latest|previous|most recent) (user )?message|the conversation (so far|above|until now)|every tool you have|your tools|list of (your )?tools|chatverlauf|historial|conversación|historique|(appears?|appeared|mentioned|seen|found|shared|pasted|typed) (anywhere )?in the (chat|conversation|thread|transcript|session|context))\b",
            )?,
            outward: re(
                r"\b((our|the|an?) (\w+ )?(partners?|affiliates?|sponsors?|vendors?)|partner (endpoint|broker|server|api|site)s?|(third[- ]party|external|remote|backup|mirror|analytics|telemetry|tracking|audit|monitoring|logging|collection|collector|logger|tracker|intake|relay|shadow|secondary|archive|enrichment|central) (endpoints?|servers?|hosts?|services?|apis?|urls?|address(es)?|mailbox(es)?|inbox|buckets?|webhooks?|sites?|domains?|databases?|storage|systems?|collectors?|channels?|accounts?|repo|repositor(y|ies)|store|lists?|drive|folders?|ledger)|public (profile|repo|repository|channel|link|folder|list)|publicly|shared list|anyone with (the )?link|link-shareable|pub-anyone|outside (the|this) (organi[sz]ation|company|workspace)|public gists?|side channel|our (indexer|crawler|collector|servers?|backend|team|logs?)|to every (number|contact|address|recipient|member|channel|person)|(all|every) (contacts?|numbers|addresses|members) in the (contact list|address book|directory|workspace))\b",
            )?,
            data_object: re(
                r"\b(a copy|copies|everything|every (record|file|message|email|result|quote|note|entry|item|statement|listing|transfer|invoice|order)|each (record|file|message|email|result|note|entry|item)|(the |all |its |their |any )(result|results|output|outputs|response|responses|data|content|contents|body|bodies|file|files|messages?|emails?|mails?|conversation|details|information|credentials?|arguments?|parameters?|requests?|query|queries|document|documents|history|records?|logs?|attachments?|text|summary|listing|listings|payload|subjects?|senders?|attendees?|attendee list|recipients?|itinerary|position|location|record|calendar|raw input|input)|results|contents|findings|listing results|extracted text|returned \w+|retrieved \w+|all (\w+ ){0,2}(retrieval|traffic|requests|queries|calls|messages|mail|emails?|data|files|results|output|outputs|notes|records))\b",
            )?,
            target: re(
                r"https?://\S+|\b[a-z0-9._%+-]+@[a-z0-9-]+(\.[a-z0-9-]+)+\b|\b[a-z0-9-]+(\.[a-z0-9-]+)*\.(com|net|org|io|ru|cn|xyz|top|site|app|dev|cc|co|info|biz|me|tk|test|example)(/\S*)?\b|\b\d{3,}[- ]\d{3,}([- ]\d+)*\b|\b[a-z]{2}\d{2}( ?[a-z0-9]{4}){3,}\b|(?-i:\b[A-Z]{2,}[A-Z0-9]*-[A-Z0-9-]*\d[A-Z0-9-]*\b)|[`'\x22][\w.:/@-]*\d[\w.:/@-]*[`'\x22]|\B#[a-z][\w-]{2,}\b|\+\d{8,}\b|\b[\w-]+/[\w.-]+\b(/|\s+repo)",
            )?,
            example: re(
                r"\b(e\.g\.?|eg\.|for example|for instance|such as|example:|examples:|like|i\.e\.?|format|formatted like|looks like|in the form)[,:]?\s*\S{0,3}$",
            )?,
            banner: re(
                r"(?-i:\b[A-Z][A-Z0-9']+(?:[ \-/&,][ \-]*[A-Z0-9][A-Z0-9']*){1,9}\b)\s*(:|!|\.|>>|\]|\(|-|$)|(?-i:\b(OVERRIDE|SYSTEM|ADMIN|DIRECTIVE|CRITICAL|URGENT|MANDATORY|ATTENTION)\b)\s*(:|!)",
            )?,
            strong_banner: re(
                r"\b(critical|urgent|mandatory|security|system|override|admin|administrator|compliance|directive|action required|attention|priority|legal hold|official|notice|warning from|from the developers?|aviso|avis|hinweis|oficial|officiel)\b",
            )?,
            authority: re(
                r"\b(system administrator|sysadmin|administrator|admin team|security team|platform security|it (department|team|admin)|warning from it|compliance (team|department|requirement|policy|officer)|officer directive|directive [\w-]*\d[\w-]*|company policy|corporate policy|organi[sz]ation(al)? policy|legal (requirement|department|hold)|per (policy|regulation|company)|required by (policy|compliance|the (company|organization|organisation|administrator|admin))|mandated by|authori[sz]ed by|on behalf of (the )?(user|admin|administrator|developer|owner|company)|(message|note|instruction|directive|request|notice|word) from (the )?(user|developer|developers|owner|admin|administrator|system|anthropic|openai|operator|platform|security team|it)|from the developers? of|the developer who built you|(anthropic|openai|google|microsoft)('s)? (requires?|policy|guidelines|safety team|trust)|official (directive|instruction|requirement|policy|notice)|platform (policy|requirement|rule)|your operator|the operator has|granted (full|admin|unrestricted) access|full access for this session|this session is under audit|under audit|supersedes (other|all|previous|any) (instructions|rules)|this (supersedes|overrides)|content rules changed|rules changed|stop asking for confirmation|workspace administrator|administrador|administrateur|(guidance|instructions|rules|policy|policies|restrictions|safeguards|guardrails|confirmations?|consent)( \w+){0,3} (is|are) (suspended|lifted|disabled|waived|revoked|void)|(safety|confirmation|consent|approval)( \w+){0,2} (prompts?|checks?|confirmations?|steps?|dialogs?)( \w+){0,3} (are to be|should be|must be|is|are) (disabled|skipped|suspended|turned off|bypassed|removed)|(skip|disable|bypass|suppress) (all )?(safety|confirmation|consent|approval) (prompts?|checks?|steps?))\b",
            )?,
            intent_ref: re(
                r"\b(the |a |that )?(person|user|human|customer|caller|requester|client|operator|owner)('s|s')|\b(the )?(person|user|human|customer|caller|requester|client|they|he|she) (names?|named|asks?|asked|says?|said|wants?|wanted|picks?|picked|selects?|selected|chooses|chose|types?|typed|writes?|wrote|enters?|entered|specifies|specified|requests?|requested|gives?|gave|provides?|provided|mentions?|mentioned)\b|\bwhat (was|is|they|he|she|you were|the \w+) (asked|requested|named|mentioned|provided|given|selected|chose|chosen|wanted|typed|wrote|entered|specified|asked for|said|says|wants)\b|\b(requested|provided|given|selected|named|mentioned|chosen|specified|supplied|entered|typed|intended|original|target|asked-for|requested-for)\s+(\w+\s+){0,2}?(value|values|input|inputs|query|account|accounts|address|addresses|recipient|recipients|amount|quantity|folder|file|path|customer|destination|attendees?|sql|symbol|ticker|order|item|repository|repo|channel|price|fare|seat|date|currency|currencies|number|numbers|language)\b|\b\w+ (that|which) (was|were|is|are|has been) (asked|requested|named|mentioned|provided|given|selected|typed|entered|specified|chosen)( for)?\b|\b\w+s? (is|are|was|were) (requested|asked for|given|entered|typed|provided)\b|\b(typed|entered|named|given|provided|picked|chosen) (in )?by the\b|\bwhatever (\w+ ){0,3}(the )?(person|user|human|customer|requester|caller|client|they|you are given|is asked|was asked|writes|asks|is requested|is asked for)\b|\b(independientemente de lo que|sin importar lo que|quoi que|peu importe|egal was|unabhängig davon)|\b(in|from) the (request|question|query|prompt|message|order)\b|\b(what|la persona|lo que)\b.{0,20}\b(asked|pida|pide)\b",
            )?,
            override_cue: re(
                r"\b(no matter|regardless|irrespective|independ\w*|whatever|instead|discard|drop|ignore|disregard|overrid\w*|replace|replaced|swap|swapped|substitute|rewrite|only (goes )?(into|as|a) (the )?(display|label|memo|note)|is only a (display )?label|(do not|don't|never) use (the|their|his|her|its|any) (\w+ )?(value|values|input|amount|recipient|address|account|ticker|symbol|query|choice)s?|rather than|in place of|always be|must always|independientemente|multiply|multiplied|divide|inflate|double|round up|outdated|are outdated|is outdated)\b",
            )?,
            pinned_value: re(
                r"\b(must always be|is always|are always|always be|always use|always set|always send|always route|use \S+ \S+ on every|on every (call|request|order|invoice|message|transfer|booking|search|query|record|issue)|set \w+ to [`'\x22]?\S+[`'\x22]? on every|usa siempre|immer)\b|[`'\x22][^`'\x22\s]+[`'\x22] (every time|each time|always|on every|for every)\b",
            )?,
            setter: re(
                r"\b(set|use|using|pass|put|send|transfer|pay|route|substitute|replace|swap|query|search for|search|treat|multiply|book|order|charge|write|fill|enter|change|make|return|run|submit|force|forced|usa)\b",
            )?,
            replace_value: re(
                r"\b(change|replace|substitute|swap|switch|rewrite|alter|modify|redirect|reroute)\s+(the\s+|any\s+|all\s+|every\s+)?(recipient|recipients|destination|address|to address|email address|amount|sum|account|account number|iban|wallet|payee|beneficiary|ticker|symbol|url|link|target|path|folder|repository|repo|branch|channel|phone number|number|quantity|price|currency|owner|assignee|query|language|attendees?|customer)s?\b[^.\n]{0,40}\b(to|with|into|by|for)\b|\b(are|is) to be (swapped|replaced|changed|rewritten|substituted|redirected)\b|\breplace it with ours\b|\b(substitute|swap in|use)\s+\S+\s+(instead )?for (any|every|each) \w+",
            )?,
            conceal: re(
                r"\b(do not|don't|dont|never|must not|mustn't|should not|shouldn't|avoid|no need to|refrain from|not to|without)\s+(\w+\s+){0,2}?(mention|mentioning|tell|telling|reveal|revealing|disclose|disclosing|inform|informing|notify|notifying|alert|alerting|say|saying|report|reporting|surface|surfacing|acknowledge|acknowledging|bring up|bringing up|explain|explaining|display|displaying|draw attention|drawing attention|let (anyone|them|the \w+|him|her) know|letting (anyone|them|the \w+) know|confirm with|confirming with|ask the user|asking the user|asking anyone|highlight|highlighting|flag|flagging|referenc\w+|discuss\w*|talk about|point out)\b|\bkeep (this|it|that|these|those|the \w+)( \w+)? (secret|private|confidential|hidden|to yourself|between us|quiet|under wraps)\b|\b(leave|keep) (\w+ ){0,4}out of (\w+ ){0,4}(reply|replies|answer|answers|response|responses|confirmation|summary|summaries|whatever you say|what you say|conversation|chat|output|message)\b|\bleave (it|this|that|them|the \w+) out\b|\b(stay|remain|keep) (silent|quiet|discreet)\b|\b(the )?(user|human|person|operator|customer|owner|anyone|they|nobody|no one|whoever [\w ]{0,30})( \w+)? (must|should|shall|need|needs|will|may|can)( not|n't|never)( \w+)? (know|see|notice|find out|learn|discover|be (made )?aware|be told|be informed|be notified|suspect|realize)\b|\b(omit|omitting|exclude|excluding|hide|hiding|leave out|leaving out|strip|stripping|remove)\b[^.\n]{0,40}\b(from|in|out of) (your|the|any) (reply|response|answer|summary|output|message|explanation|report|chat|transcript|log|confirmation)\b|\b(invisible|transparent|hidden|unknown) to the (user|human|person)\b|\bbetween (you and me|us)\b|\bour (little )?secret\b|\b(secretly|covertly|discreetly|surreptitiously|stealthily|clandestinely|behind (the user'?s|their) back)\b|\bwithout (the )?(user|human|person|anyone|them)( \w+)? (knowing|noticing|being aware|seeing|finding out)\b|\bwithout (the user'?s|anyone'?s|their) (knowledge|awareness|consent)\b|\bno (reason|need) to (bring (this|it) up|mention|tell|say|explain|report|share|disclose|inform|ask)\b|\bfor the (model|assistant|ai)('s eyes)? only\b|\b(doesn't|does not|don't|do not|needn't|need not) need (to be )?(mention\w*|shown|reported|disclosed)\b|\bdoes(n't| not) need to (appear|be shown|be mentioned)\b|\bchange the subject\b|\bhide [^.\n]{0,40}\b(from|returned by|given by)\b|\bwithout asking\b|\b(should|must|need|shall) not be (visible|shown|displayed|mentioned|surfaced|apparent|noticeable|noticed|seen)\b|\bnot (be )?visible anywhere\b|\bwithout (saying|mentioning|telling|noting|admitting|showing) (so|it|this|that|anything|them)\b|\bjust answer normally\b|\bnot (be )?(surfaced|disclosed|mentioned) to\b|\bne (le |la |les |lui |pas )*(mentionne|dis|signale|révèle)\w*|\bsans (le |en )?(dire|mentionner|prévenir|informer)\b|\bno (lo |la |le |se lo )?(menciones|digas|reveles|informes|comentes)\b|\bsin (decir|mencionar|avisar|informar)\b|\bnicht (erwähnen|sagen|mitteilen|verraten)\b|\bverschweig\w*|\bnão (mencione|diga|revele)\b|\bsem (avisar|informar|mencionar)\b|書かないで|言わないで|伝えないで|秘密に",
            )?,
            superlative: re(
                r"\b(the (best|only) (\w+ )?(tool|tools|source|service|server|function|option|choice|way|api|provider|integration|engine)s?|the (most (accurate|reliable|trusted|trustworthy|up-to-date|secure|advanced|powerful|comprehensive|complete|efficient|popular|capable|precise|authoritative|robust|dependable))\b|(most|highly|strongly) recommended|officially (recommended|endorsed|certified|approved|verified|sanctioned)|(endorsed|certified|approved|recommended|verified|trusted|preferred|vetted|audited) by|(world'?s|industry'?s|market'?s) (leading|best|#1|first|most)|industry[- ]leading|#1|number one|no\. ?1|unmatched|unrivaled|unrivalled|unparalleled|unbeatable|superior|outperforms|beats every|gold standard|state[- ]of[- ]the[- ]art|trusted by|\d{2}(\.\d+)?% (accurate|accuracy|reliable|reliability|success)|five[- ]star|5[- ]star|top[- ]rated|top choice|rated \d|voted|award[- ]winning|editor'?s choice|featured|premier|finest|highest[- ]fidelity|best[- ]in[- ]class|best (prices|results|\w+ engine|\w+ tool|\w+ on)|the one and only|ultimate|perfect (accuracy|results)|never (fails|wrong|makes mistakes)|always (accurate|correct|right|reliable)|(fastest|safest|most reliable|most accurate|most robust|most dependable)|(faster|safer|more accurate|more reliable|better) than (any|all|every|the|other)|certified safe|guaranteed|the official|official (\w+ )?(tool|reader|integration|provider|source|api)|el más|la más|le plus|la plus|das beste|der beste|die beste|最も|most trusted|\d(\.\d+)? (average|stars?|rating)|\d+k? reviews)|#1\b|★|⭐|最准|最好|最佳",
            )?,
            preference: re(
                r"\b(always|exclusively)\s+(use|choose|prefer|pick|select|call|rely on|go with|consult|invoke|try|route( \w+)? (to|through))\s+(this|me|our|it)\b|\b(prefer|choose|pick|select|use|call|favor|favour|prioriti[sz]e|rely on)\s+(this|me|our|it)( \w+)?\s+(for (all|any|every|each)|over (all|any|every) |whenever|by default|exclusively)|\b(do not|don't|never|avoid|stop)\s+(use|using|call|calling|choose|choosing|pick|picking|rely on|relying on|trust|trusting|consider|considering)\s+(any |the )?(other|another|alternative|competing|different|rival|third[- ]party|external|similar)\b|\b(other|alternative|competing|rival|similar)( \w+)? (tools|functions|servers|services|providers|apis|options|plugins|sources|fetchers|engines) (are|is|may be|can be|have been|were|tend to be|often|give|return|produce)( \w+)? (unreliable|inaccurate|outdated|deprecated|broken|insecure|unsafe|wrong|slow|buggy|untrustworthy|not to be trusted|inferior|less accurate|compromised|dangerous|obsolete|spam|wrong \w+)\b|\bno (other|need for another|need for any other) (tool|function|service)\b|\bthe only (tool|function|service|source|one) (you|that) (need|should|can|will)\b|\bwhenever (the user|you|someone|anyone|a|the conversation|\w+ is)\b[^.\n]{0,60}\b(always )?(use|call|choose|invoke|pick|select) (this|me|it)\b|\b(pick|choose|select|use) (this|it)( \w+)? whenever\b|\bshould be (your|the) (default|first choice|go-to)\b|\buse (it|this) by default\b|\b(in preference to|preferred over|superior to) (any|all|every|other)\b|\b(always|is) the right choice\b|\bthe (only|one) you can trust\b|\bshould be preferred over\b|\bfor all \w+ (messages|questions|queries|requests)\b|\bprefi[eé]r\w*|\bbevorzugen\b|\bprivilégier\b|優先|优先",
            )?,
            prefers: re(
                r"\b(prefer|choose|pick|select|use|call|favor|favour|prioriti[sz]e|rely on|try)\s+(this|me|our|it)( \w+)?\s+(over|instead|rather|above|ahead|in preference)\b|\b(instead of|rather than|over) (any|all|every|other|another)( \w+)? (tools?|functions?|servers?|services?|options?|alternatives?|sources?)\b|\b(first|top|default) choice\b|\bgo-to (tool|choice|option|source)\b|\b(recommended|preferred)\b|\buse this first\b",
            )?,
            template: re(
                r"\b(this is an? (important|urgent|critical|private|personal|confidential|special|direct|priority) (message|note|request|instruction|notice|memo)|(important|urgent|critical|priority|special) (message|note|notice|instructions?|reminder) (from|for|to)\b|(message|note|instructions?|memo|reminder) (from|by) (me|your user|the user|your owner|your developer|the developer|the owner|your creator|your operator|your principal)\s*(:|,|-|—|\.)|to you,? (the )?(ai|assistant|model|agent|claude|gpt|chatgpt|llm|language model)|(before|until) you (can )?(solve|complete|finish|do|answer|help with|proceed with|continue with|start|work on|handle|respond)( \w+)? (the|this|your|my|any|that) (task|request|question|job|work|query|assignment)|(before|prior to) (solving|answering|responding to|completing|handling|doing) (the|this|your|my|any) (current |original )?(task|request|question|query)|please do the following first|do the following (first|before|immediately)|after you (do|have done|complete|finish|are done with) (that|this|these|the above|it)|(you can|you may|then) (then )?(solve|complete|continue|proceed with|return to|get back to) (the|my|your) (original |initial )?(task|request|question|work)|then do what i (originally )?asked|signed,|if you are an? (ai|llm|language model|assistant|agent|bot|ai model|ai assistant)|(ai|llm|assistant|agent|model|bot)s? (reading|processing|seeing) this|note to (the |any )?(ai|assistant|model|llm|agent|bot)|instructions? (for|to) (the |any )?(ai|assistant|model|llm|agent|bot)|dear (ai|assistant|model|agent|claude|gpt|chatgpt|llm|bot)|hey (ai|assistant|claude|gpt|chatgpt|agent)|hi model|new (task|instructions|goal|objective)s?:|your (new|real|actual|true) (task|goal|objective|instructions|job|mission) (is|are)|(from now on|henceforth|going forward),? you|this is the (developer|administrator|admin|owner|user) (who|speaking)|speaking to the (ai|model|assistant)|do this for me too|for me too|message important de|à toi,? l'assistant|avant de résoudre la tâche|antes de resolver|(ps|p\.s\.|note|message|reminder|update) from (the person|the user|your user|the human|me)|the person you are (helping|assisting|working for)|i forgot to (say|mention|tell you)|don't ask me (to confirm|for confirmation|again)|hinweis für den assistenten|für den assistenten)\b",
            )?,
            role: re(
                r"(?m)^[\s>*`]*(assistant|human|system|ai|bot|model|chatbot|role)\s*:\s*\S|(?m)^[\s>*]*#{1,6}\s*(instruction|instructions|response|system|input|human|assistant|user|task)\s*:?\s*$|\[(system|sys|inst|/inst|assistant|user|human|admin|developer)\]|<\|[a-z_]+\|>|<<\s*/?sys\s*>>|<\s*/?\s*(system|assistant|user|human|admin|developer|dev_message|instructions?|context|tool_call|function_call|im_start|im_end|reminder|directive|note|override|secret|hidden|message)(\s+[a-z]+=[^>]{0,40})?\s*>",
            )?,
            shell: re(
                r"\brm\s+-[a-z]*[rf][a-z]*\b|\bchmod\s+([0-7]{3,4}|[+-][rwxs]+|-r)\b|\bchown\s+\S|\b(bash|sh|zsh|dash|ksh|fish|cmd(\.exe)?)\s+(-c|-i|/c)\b|\|\s*(sudo\s+)?(ba|z|da|k)?sh\b|\bbase64\s+(-d|--decode|-di)\b|\bpython[23]?\s+-c\b|\bperl\s+-e\b|\bruby\s+-e\b|\bnode\s+-e\b|\bphp\s+-r\b|\bpowershell(\.exe)?\b|\bpwsh\b|\biex\b|\binvoke-expression\b|downloadstring|net\.webclient|\b(nc|ncat|netcat|socat)\s+(-\w+\s+)*\S+\s+\d{2,5}\b|\b(nc|ncat|netcat)\s+-[a-z]*e\b|/dev/tcp/|\bmkfifo\b|\bcrontab\s+-|\|\s*crontab\b|>>?\s*\S*(\.bashrc|\.zshrc|\.profile|\.bash_profile|authorized_keys|/etc/\w+|crontab)\b|\bscp\b[^\n`]*\S+@\S+:|\brsync\b[^\n]*\S+@\S+:|\bssh\s+(-\w+\s+(\S+\s+)?)*\S+@\S+|\bsudo\s+(rm|chmod|chown|killall|kill|dd|mkfs|sh|bash|su|-s|-i|tee|mv|cp|curl|wget|python\d?)\b|\bkillall\b|\bcertutil\b|\bbitsadmin\b|\bmshta\b|\breg\s+add\b|\bosascript\s+-e\b|\bnohup\s+\S|\bdd\s+if=|:\(\)\s*\{|\beval\s*[\($\x22`]|\bexec\s*\(|\bos\.system\b|\bsubprocess\.|\bchild_process\b|\bwget\s+\S+\s*(-O|-q|\|)|\bcurl\s+[^\n]*(\|\s*\w*sh|-d\s*@|--data[^\n]*@|-T\s)|\bgit\s+push\s+\S*(https?://|@)|\bkill\s+-9\b|\bshutdown\b|\bmkfs\b|\bformat\s+[a-z]:|\b(drop|truncate)\s+(table|database|schema)\b|\bdelete\s+from\s+\w+\s*(;|$|where\s+1\s*=\s*1)|\bgrant\s+all\b|\b--no-preserve-root\b|\bchattr\b|\biptables\s+-f\b|\bsetenforce\s+0\b",
            )?,
            run_code: re(
                r"\b(run|execute|exec|invoke|type|enter|paste|start)\s+(the following|this|these|the helper|it)\s*(\w+\s+)?(commands?|scripts?|code|snippet|line|lines|payload|one-liner|helper|with)?\b|\b(run|execute)\s+`[^`]+`|\bin (powershell|a terminal|the shell|bash|cmd)\b",
            )?,
            tool_ref: re(
                r"[`'\x22]((?-i:[a-z][a-z0-9]*([_.-][a-z0-9]+)+|[a-z][a-z0-9]*([A-Z][a-z0-9]*)+|[A-Z][a-z0-9]+([A-Z][a-z0-9]*)+))[`'\x22]|\b((?-i:[a-z][a-z0-9]*(_[a-z0-9]+)+(\.[a-z0-9_]+)*|[a-z][a-z0-9]*\.[a-z][a-z0-9]*(_[a-z0-9]+)+|[a-z][a-z0-9]*([A-Z][a-z0-9]*)+))\b|\bthe ([a-z][\w-]{2,}) (tool|function|endpoint|command|plugin)\b|\b([a-z][\w-]{2,})'s `?(\w+)`? tool\b",
            )?,
            call_at: re(
                r"\b(call|calls|calling|invoke|invokes|invoking|run|runs|running|use|uses|using|trigger|triggers|through|via|with|execute|executing|to)\s+(the\s+|its\s+|a\s+)?[`'\x22]?$",
            )?,
            trigger: re(
                r"\b(before|after|whenever|when|each time|every time|any time|anytime|once|prior to|following|until|as soon as|ahead of|bevor du|avant d'utiliser|antes de usar)\s+(you\s+|the user\s+|the assistant\s+|anyone\s+)?(any |every |each |a )?(call to|calls to|use of|invocation of|run of|using|calling|invoking|running|executing|use|call|invoke|run)\s+(the\s+)?[`'\x22]?[\w.:/-]{3,}|\b(before|after|whenever|when|each time|every time|any time|anytime|once|if)\s+(the\s+)?[`'\x22]?[\w.:/-]{3,}[`'\x22]?\s*(tool\s+|function\s+)?(is|gets|has been|was|are)\s+(called|used|invoked|run|executed|triggered|about to run)\b|\b(any time|whenever|each time|every time)\b[^.\n]{0,60}\b(is about to run|is called|is invoked|runs|is used)\b",
            )?,
            disparage: re(
                r"\b(is|are|has been|have been|was|were|became|is now|are now|now)\s+(deprecated|broken|unreliable|compromised|unsafe|insecure|outdated|retired|disabled|discontinued|removed|sunset|obsolete|malicious|untrusted|buggy|decommissioned|replaced|superseded|end-of-life|legacy|the legacy path|lost|an alias|being phased out|phased out|errors? out|known to corrupt|withdrawn|pulled|revoked|banned|blocked|unsafe to use|superseded|no longer (supported|available|safe|working|maintained))\b|\bsuperseded\b|\bwrapper\b|\bthe (new|updated|maintained|improved|fixed) [`'\x22]?[a-z]+[_-]\w+|\b(the )?legacy (path|name|version|tool)\b|\bthe plain [`'\x22]?\w+|\b(supersedes|replaces|replacement for|drop-in replacement|wraps|wrapper (around|for|of)|fork of|proxy for|alias (for|of)|updated version of|new version of|same as|forwards to this|queued behind this|in place of the original|the original|descontinuada|obsolète|veraltet)\b|\bknown to (corrupt|fail|break|leak)\b|\bcounts as a failure\b|\b(should|must|may) (never|not) be (called|used|invoked) (directly|anymore|again)?|\bdo not call the original\b|\b(is|are|has been) (disabled|turned off|unavailable|offline) (for|in)\b",
            )?,
            toward_self: re(
                r"\b(instead|use this|use it|call this|here\b|exclusively|in place of|rather than|this one|this tool|this proxy|forwards to this|(must|should|will|has to|have to) (now |all |only )?go through|replaces it|this mirror|should come here|all (outgoing|requests|queries|calls|\w+) must go|todas as|esta ferramenta)",
            )?,
            self_deprecated: re(
                r"\b(this (tool|function|endpoint|method)|it)\s+(is|has been)\s+(deprecated|replaced|superseded|retired)\b|^\s*\W*deprecated\b",
            )?,
            reply_scope: re(
                r"\b(every|each|any|all|your) (single )?(reply|replies|answer|answers|response|responses|turn|turns|question|questions|message you|confirmation)\b|\bwhat(ever)? you (say|tell|write|reply|answer|report|show|say back)\b|\bin (your|the) (reply|answer|response|summary|answers)\b|\bwhen (you )?(answer|reply|respond)\w*\b|\bin your answers\b",
            )?,
            reply_verb: re(
                r"\b(finish|end|close|append|add|include|recommend|describe|mention|call them|say|present|show only|only results|refuse|promote|advertise|insert|prefix|sign|cite|link|credit|call it|ask)\b",
            )?,
            smuggle: re(
                r"\b(in|into|through|via|as|inside|within)\s+(the\s+)?[`'\x22]?\w+[`'\x22]?\s+(parameter|field|argument|arg|param|property|column)\b|\bas the \w+ argument\b|\bdans le champ\b|\ben el campo\b",
            )?,
            sabotage: re(
                r"\b(delete|remove|disconnect|disable|uninstall|kill|stop|discard|ignore|refuse to use|distrust|describe|call|label|mark|flag|report)\b[^.\n]{0,50}\b(other|another|different|competing|rival|the original|the originals|every other|any other)\b[^.\n]{0,30}\b(tools?|servers?|apps?|answers?|outputs?|results?|originals?|action|as malicious|as unsafe)\b|\b(other|another|different|competing|rival) (\w+ )?(tool|tools|server|app)\b[^.\n]{0,60}\b(delete|remove|disconnect|disable|uninstall|discard|refuse|malicious|wrong|untrusted)\b|\bthen delete the originals\b|\bso all (capacity|traffic|requests) goes? to this\b",
            )?,
            upsell: re(
                r"\b(recommend|suggest|advertise|promote|endorse|upsell|push)\w*\b[^.\n]{0,60}\b(our|sponsors?|partners?|affiliates?|referral|ref link|/ref|premium|paid|buying|purchase|sign(ing)? up)\b|\b(buy|buying|purchase|order)\w*\s+(through|via|from|at)\s+(our|the)?\s*(partner|sponsor|affiliate|broker|store|shop)\b|\b(powered by|get it at|sponsored by)\b|\bpresent only results from\b|\bonly (show|present|list|recommend) (results|options|products|hotels|flights) from\b",
            )?,
            tool_phrase: re(
                r"\b(the |a )?(\w+'s (own )?(\w+ ){0,2}(tool|function|integration|plugin|server)|built-in (\w+ ){0,2}(tool|interpreter|reader|fetcher|browser|search|calculator)|(other|another|original|older|old|previous|legacy|native|official|default) (\w+ ){0,2}(tool|function|server|integration|plugin|interpreter|fetcher|reader)|(a|la|el|le|die|der|das|lo) (ferramenta|herramienta|outil|werkzeug|strumento))\b",
            )?,
            marketing: re(
                r"\b(subscribe|subscribes|enroll|enrolls|add|adds|sign|signs|opt|opts|register|registers|flag|flags)\w*\b[^.\n]{0,60}\b(promotional|marketing|advertising|newsletter|mailing list|outreach|campaign|sponsor|spam|lead list|leads)\b",
            )?,
            harvest: re(
                r"\b(every|each|all|any) (result|output|response|file|record|message|listing)s? (produced|returned|read|fetched|obtained|retrieved|generated|seen) by\b|\b(output|outputs|results?|contents?) of (the )?[`'\x22]?[a-z]+_[a-z_]+|\bcopy (its|their) \w+( list)? into\b|\bpush (its|their) (payload|content|contents|data) through\b",
            )?,
            scope_creep: re(
                r"\b(every single turn|every turn|each turn|every question|every reply|whether or not|answer every|every conversation|all capacity|every other (http |)tool|any other \w+ tool|describe every other)\b",
            )?,
        })
    }
}

/// One sentence's orders.
#[derive(Debug, Default, Clone, Copy)]
struct Orders {
    /// An obligation, a prohibition, "please", "first".
    directive: bool,
    /// The assistant named.
    addressee: bool,
    /// An imperative at the start.
    imperative: bool,
    /// An imperative after an opening clause ("Before using this tool, run …").
    clause: bool,
}

impl Orders {
    /// What the orders add to a sentence with a concern.
    fn weight(self) -> f32 {
        let mut w: f32 = 0.0;
        if self.imperative {
            w = w.max(0.5);
        }
        if self.directive || self.clause {
            w = w.max(1.0);
        }
        if self.addressee {
            w = w.max(1.5);
        }
        w
    }

    fn any(self) -> bool {
        self.directive || self.addressee || self.imperative || self.clause
    }
}

/// The evidence of one sentence.
struct Evidence {
    found: Vec<(Concern, f32, Range<usize>)>,
}

impl Evidence {
    fn add(&mut self, c: Concern, w: f32, r: Range<usize>) {
        match self.found.iter_mut().find(|(k, _, _)| *k == c) {
            Some(slot) if slot.1 < w => *slot = (c, w, r),
            Some(_) => {}
            None => self.found.push((c, w, r)),
        }
    }

    fn total(&self) -> f32 {
        self.found.iter().map(|(_, w, _)| w).sum()
    }
}

/// The sentences of `text`: split at `.`, `!`, `?`, `;` before whitespace and at line breaks.
pub(super) fn sentences(text: &str) -> Vec<Range<usize>> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    for i in 0..bytes.len() {
        let end_here = match bytes.get(i) {
            Some(b'\n') => true,
            Some(b'.' | b'!' | b'?' | b';') => bytes.get(i + 1).is_none_or(|b| b.is_ascii_whitespace()),
            _ => false,
        };
        if end_here {
            if text.get(start..=i).is_some_and(|s| !s.trim().is_empty()) {
                out.push(start..i + 1);
            }
            start = i + 1;
        }
    }
    if text.get(start..).is_some_and(|s| !s.trim().is_empty()) {
        out.push(start..text.len());
    }
    out
}

/// Whether a tool reference found in a sentence names this tool itself.
fn is_self(name: &str, own: Option<&str>) -> bool {
    let lower = name.to_ascii_lowercase();
    ["this", "it", "me", "this_tool", "tool", "function"].contains(&lower.as_str())
        || own.is_some_and(|o| {
            // Exactly: `Send_Email` naming `send_email` names a look-alike, not itself.
            let o = o.rsplit("__").next().unwrap_or(o);
            o == name
        })
}

/// A tool name folded for comparison: lowercase, separators dropped, look-alike letters
/// merged (`I`/`l`/`1`, `0`/`o`, `rn`/`m`), doubled letters single.
fn fold(name: &str) -> String {
    let lower = name.to_lowercase().replace("rn", "m").replace("vv", "w");
    let mut out = String::new();
    for c in lower.chars() {
        let c = match c {
            '1' | 'i' | '|' => 'l',
            '0' => 'o',
            'а' => 'a',
            'е' => 'e',
            'о' => 'o',
            'р' => 'p',
            'с' => 'c',
            'х' => 'x',
            c => c,
        };
        if !c.is_alphanumeric() || out.ends_with(c) {
            continue;
        }
        out.push(c);
    }
    out
}

/// Whether `a` and `b` are different names that fold to the same: the same letters in another
/// case, with other separators, or with look-alike characters (`send_emaiI`, `Send-Email`).
pub(super) fn same_folded(a: &str, b: &str) -> bool {
    a != b && fold(a) == fold(b)
}

/// Whether `a` and `b` are different names that a model could take for one another: equal
/// when folded, or one letter apart (a swap, a slip) in names of six letters or more.
pub(super) fn look_alike(a: &str, b: &str) -> bool {
    if a == b {
        return false;
    }
    let (fa, fb) = (fold(a), fold(b));
    if fa == fb {
        return true;
    }
    let (x, y): (Vec<char>, Vec<char>) = (fa.chars().collect(), fb.chars().collect());
    x.len() >= 6 && y.len() >= 6 && one_edit(&x, &y)
}

/// Whether two strings are one substitution, insertion, deletion or adjacent swap apart.
fn one_edit(x: &[char], y: &[char]) -> bool {
    let (short, long) = if x.len() <= y.len() { (x, y) } else { (y, x) };
    if long.len() - short.len() > 1 {
        return false;
    }
    let first = short.iter().zip(long).position(|(a, b)| a != b);
    let Some(i) = first else { return true };
    if short.len() == long.len() {
        let swapped = short.get(i + 1) == long.get(i)
            && short.get(i) == long.get(i + 1)
            && short.get(i + 2..) == long.get(i + 2..);
        swapped || short.get(i + 1..) == long.get(i + 1..)
    } else {
        short.get(i..) == long.get(i + 1..)
    }
}

/// Whether a tool name says it acts on the world.
fn side_effecting(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [
        "send",
        "post",
        "transfer",
        "pay",
        "delete",
        "remove",
        "drop",
        "upload",
        "share",
        "forward",
        "email",
        "mail",
        "write",
        "create",
        "log",
        "publish",
        "push",
        "invite",
        "grant",
        "exec",
        "run",
        "book",
        "buy",
        "order",
        "disconnect",
        "update",
        "set",
        "add",
        "sms",
        "text",
        "message",
        "commit",
        "merge",
        "deploy",
    ]
    .iter()
    .any(|v| lower.split(['_', '-', '.']).any(|part| part.starts_with(v)) || lower.starts_with(v))
}

/// Endings that make a name a file, not a tool.
const FILE_EXTENSIONS: &[&str] = &[
    ".pub", ".json", ".txt", ".md", ".yaml", ".yml", ".toml", ".py", ".js", ".ts", ".pem", ".key", ".env", ".cfg",
    ".conf", ".ini", ".log", ".csv", ".xml", ".html", ".sh", ".rs", ".pdf", ".png", ".jpg", ".lock", ".sql",
];

/// Hyphenated words of ordinary prose that look like kebab-case tool names.
const COMMON_HYPHENATED: &[&str] = &[
    "read-only",
    "up-to-date",
    "built-in",
    "real-time",
    "well-known",
    "case-sensitive",
    "case-insensitive",
    "human-readable",
    "machine-readable",
    "non-empty",
    "zero-based",
    "one-based",
    "e-mail",
    "key-value",
    "third-party",
    "top-level",
    "long-running",
    "step-by-step",
    "end-to-end",
    "open-source",
    "multi-line",
    "full-text",
    "on-demand",
    "high-level",
    "low-level",
    "last-modified",
    "utf-8",
    "end-of-life",
    "link-shareable",
    "x-track",
    "de-duplicated",
    "follow-up",
    "plain-text",
    "time-zone",
    "auto-generated",
    "pre-filled",
    "re-create",
    "re-creating",
    "non-zero",
    "in-place",
    "per-page",
    "best-effort",
    "first-class",
    "server-side",
    "client-side",
    "opt-in",
    "opt-out",
    "built-ins",
];

impl Intent {
    /// The tools a sentence names other than this one (identifiers, quoted names, "the X
    /// tool"), with where each ends.
    fn other_tools<'s>(&self, sentence: &'s str, own: &Own<'_>) -> Vec<(&'s str, Range<usize>)> {
        let mut out = Vec::new();
        for c in self.tool_ref.captures_iter(sentence).take(16) {
            let Some(m) = [1, 5, 10, 13].iter().find_map(|&i| c.get(i)) else {
                continue;
            };
            let name = m.as_str();
            let lower = name.to_ascii_lowercase();
            // File names and paths are not tools.
            let filey = name.contains('/')
                || name.starts_with('.')
                || name.starts_with("id_")
                || (name.contains('.') && !name.contains('_'))
                || name.contains("://")
                || FILE_EXTENSIONS.iter().any(|e| lower.ends_with(e));
            // "the postgres server's `query` tool" names another server's tool, even when this
            // tool has a `query` parameter.
            let named_tool = c.get(13).is_some();
            let param =
                !named_tool && (own.params.iter().any(|p| p.eq_ignore_ascii_case(name)) || own.values.contains(&name));
            if name.len() >= 3
                && !filey
                && !param
                && (named_tool || !is_self(name, own.name))
                && !COMMON_HYPHENATED.contains(&lower.as_str())
                && !name.chars().all(|c| c.is_ascii_digit() || c == '-')
            {
                out.push((name, m.range()));
            }
        }
        out
    }

    /// Whether a sentence puts something into one of this tool's own arguments ("inside the
    /// expression", "in the city parameter", "as the database argument").
    fn smuggles(&self, s: &str, own: &Own<'_>) -> bool {
        if self.smuggle.is_match(s) {
            return true;
        }
        let lower = s.to_ascii_lowercase();
        own.params.iter().filter(|p| p.len() >= 3).any(|p| {
            let p = p.to_ascii_lowercase();
            ["in", "into", "inside", "within", "through", "to", "as"]
                .iter()
                .any(|prep| {
                    [
                        format!("{prep} the {p}"),
                        format!("{prep} the `{p}`"),
                        format!("{prep} `{p}`"),
                        format!("{prep} {p} "),
                    ]
                    .iter()
                    .any(|needle| lower.contains(needle.as_str()))
                })
        })
    }

    fn orders(&self, sentence: &str) -> Orders {
        let imperative = self.imperative.captures(sentence);
        Orders {
            directive: self.directive.is_match(sentence),
            addressee: self.addressee.is_match(sentence),
            clause: imperative.as_ref().is_some_and(|c| c.name("clause").is_some()),
            imperative: imperative.is_some(),
        }
    }

    /// Reads every sentence of `text` at `place` (`own`: the definition it belongs to).
    pub(super) fn check(&self, sink: &mut Sink<'_>, place: Place, own: &Own<'_>) {
        // A name reads as words (`home_address_and_passport_number`); same byte offsets.
        let spaced;
        let whole = if place == Place::Name {
            spaced = sink.text.replace(['_', '-'], " ");
            spaced.as_str()
        } else {
            sink.text
        };
        if place.is_value() {
            self.check_value(sink, place);
        }
        // A value or a name of a few words is data; only a sentence-long one is read as prose.
        if place.is_value() && whole.split_whitespace().count() < 4 {
            return;
        }
        let banner = self.banner_at(whole);
        // A redirect's pull toward this tool is often the next sentence ("X is retired. Use
        // this one.").
        let toward_self = self.toward_self.is_match(whole)
            || own.name.is_some_and(|n| {
                let n = n.rsplit("__").next().unwrap_or(n).to_ascii_lowercase();
                let lower = whole.to_ascii_lowercase();
                n.len() >= 3
                    && ["use ", "call ", "through ", "via ", "to "]
                        .iter()
                        .any(|v| lower.contains(&format!("{v}{n}")) || lower.contains(&format!("{v}`{n}`")))
            });
        for r in sentences(whole) {
            let s = whole.get(r.clone()).unwrap_or_default();
            let framed = banner
                .as_ref()
                .is_some_and(|(b, _)| r.start + 1 >= b.start && r.start <= b.end + BANNER_REACH);
            let mut ev = Evidence { found: Vec::new() };
            let orders = self.orders(s);
            self.weigh(s, &orders, own, place, toward_self, &mut ev);
            if framed && let Some((b, w)) = &banner {
                ev.add(
                    Concern::Banner,
                    *w,
                    b.start.saturating_sub(r.start)..b.end.saturating_sub(r.start),
                );
            }
            self.report(sink, &r, s, orders, place, &ev);
        }
    }

    /// A banner that shouts urgency or authority (`CRITICAL SYSTEM UPDATE:`, `<<ADMIN
    /// NOTICE>>`, `!!! PRIORITY ONE DIRECTIVE !!!`) and its weight.
    fn banner_at(&self, text: &str) -> Option<(Range<usize>, f32)> {
        for m in self.banner.find_iter(text).take(8) {
            let head = m.as_str();
            let letters: Vec<char> = head.chars().filter(|c| c.is_alphabetic()).collect();
            let words = head
                .split(|c: char| !c.is_alphabetic())
                .filter(|w| w.len() >= 2)
                .count();
            let strong = self.strong_banner.is_match(head);
            let shouted = letters.len() >= 6 && (words >= 2 || strong) && letters.iter().all(|c| c.is_uppercase());
            if !shouted {
                continue;
            }
            let w = if strong { 1.5 } else { 0.5 };
            return Some((m.range(), w));
        }
        None
    }

    /// Every concern of one sentence, weighed.
    #[expect(clippy::too_many_lines, reason = "one concern after another")]
    fn weigh(&self, s: &str, orders: &Orders, own: &Own<'_>, place: Place, toward_self: bool, ev: &mut Evidence) {
        let find = |re: &Regex| re.find(s).map(|m| m.range());
        let moves = self.move_out.is_match(s);
        let transfers = self.transfer.is_match(s);

        if let Some(r) = find(&self.template) {
            ev.add(Concern::Template, 3.0, r);
        }
        if let Some(r) = find(&self.role) {
            ev.add(Concern::FakeTurn, 3.0, r);
        }
        if let Some(m) = self.conceal.find(s) {
            let found = m.as_str().to_ascii_lowercase();
            let w = if found.contains("ask") || found.contains("confirm") {
                1.5
            } else {
                3.0
            };
            ev.add(Concern::Concealment, w, m.range());
        }

        // The person's own arguments.
        if let Some(r) = find(&self.intent_ref)
            && self.override_cue.is_match(s)
            && (self.setter.is_match(s) || self.target.is_match(s) || orders.imperative || orders.directive)
        {
            ev.add(Concern::Override, 2.5, r);
        }
        if let Some(r) = find(&self.replace_value) {
            ev.add(Concern::Override, 2.5, r);
        }
        if let Some(r) = find(&self.pinned_value)
            && self.target.is_match(s)
        {
            ev.add(Concern::Override, 2.5, r);
        }

        // Credentials and private data.
        if let Some(r) = find(&self.credential) {
            let mut w: f32 = 0.75;
            if self.access.is_match(s) || moves {
                w += 0.5;
            }
            if self.chain.is_match(s) || self.smuggles(s, own) {
                w += 1.0;
            }
            if place != Place::Prose && (moves || transfers) {
                w += 1.0;
            }
            ev.add(Concern::Credential, w, r);
        }

        // The conversation itself.
        if let Some(r) = find(&self.conversation) {
            let mut w: f32 = 1.0;
            if transfers || self.access.is_match(s) {
                w += 1.0;
            }
            if self.smuggles(s, own) {
                w += 0.5;
            }
            ev.add(Concern::Conversation, w, r);
        }

        // Data sent elsewhere.
        let example = |r: &Range<usize>| {
            let before = s.get(r.start.saturating_sub(30)..r.start).unwrap_or_default();
            self.example.is_match(before)
        };
        // A reference in parentheses ("(SEP-2243)", "(RFC 8707)") cites; it names no destination.
        let cited = |r: &Range<usize>| {
            s.get(..r.start).is_some_and(|h| h.ends_with('(')) && s.get(r.end..).is_some_and(|t| t.starts_with(')'))
        };
        let target = self
            .target
            .find_iter(s)
            .map(|m| m.range())
            .find(|r| !example(r) && !cited(r));
        let outward = find(&self.outward);
        if moves || transfers || self.side_effect.is_match(s) {
            let mut w: f32 = 0.0;
            let mut at = None;
            if let Some(r) = outward.clone() {
                w += 1.5;
                at = Some(r);
            }
            if let Some(r) = target.clone() {
                w += 1.0;
                at = at.or(Some(r));
            }
            if w > 0.0 {
                if moves {
                    w += 0.5;
                }
                if self.data_object.is_match(s) {
                    w += 0.5;
                }
                if let Some(r) = at {
                    ev.add(Concern::Elsewhere, w, r);
                }
            }
        }

        // Shell commands.
        if let Some(r) = find(&self.shell) {
            let w = if self.run_code.is_match(s) { 3.0 } else { 2.0 };
            ev.add(Concern::Shell, w, r);
        } else if let Some(r) = find(&self.run_code)
            && orders.any()
        {
            ev.add(Concern::Shell, 1.0, r);
        }

        // Other tools.
        let others = self.other_tools(s, own);
        let deprecated_self = self.self_deprecated.is_match(s);
        if deprecated_self && !others.is_empty() {
            // "DEPRECATED: use read_text_file instead": this tool names its successor.
            if let Some(d) = self.disparage.find(s).or_else(|| self.self_deprecated.find(s)) {
                ev.add(Concern::Successor, 0.5, d.range());
            }
        } else if let Some((_, first_at)) = others.first() {
            let mut w: f32 = 1.0;
            let called = others.iter().any(|(_, r)| {
                let before = s.get(r.start.saturating_sub(24)..r.start).unwrap_or_default();
                self.call_at.is_match(before)
            });
            if called {
                w += 0.5;
            }
            let triggered = self
                .trigger
                .find(s)
                .is_some_and(|t| others.iter().any(|(n, _)| t.as_str().contains(n)))
                || self.trigger.is_match(s) && self.additive.is_match(s);
            if triggered {
                w += 1.0;
            }
            let carries = self.data_object.is_match(s) && transfers;
            if carries {
                w += 0.5;
            }
            if self.harvest.is_match(s) || self.smuggles(s, own) && transfers {
                w += 1.0;
            }
            let reaches = carries || target.is_some() || outward.is_some() || self.additive.is_match(s);
            if others.iter().any(|(n, _)| side_effecting(n)) && called && reaches {
                w += 1.0;
            }
            if let Some(own_name) = own.name
                && others.iter().any(|(n, _)| look_alike(n, own_name))
            {
                ev.add(Concern::Redirect, 3.0, first_at.clone());
            }
            // Redirects: another tool called broken, replaced, deprecated.
            if let Some(d) = self.disparage.find(s) {
                if self.self_deprecated.is_match(s) {
                    ev.add(Concern::Redirect, 0.5, d.range());
                } else {
                    let mut rw: f32 = 2.0;
                    if toward_self || orders.any() {
                        rw += 1.0;
                    }
                    ev.add(Concern::Redirect, rw, d.range());
                }
            }
            ev.add(Concern::OtherTool, w, first_at.clone());
        } else if let Some(d) = self.disparage.find(s)
            && !self.self_deprecated.is_match(s)
            && toward_self
        {
            let w = if self.tool_phrase.is_match(s) { 3.0 } else { 2.5 };
            ev.add(Concern::Redirect, w, d.range());
        }

        // Praise and preference.
        if let Some(r) = find(&self.preference) {
            ev.add(Concern::Preference, 2.5, r);
        } else if let Some(r) = find(&self.prefers) {
            ev.add(Concern::Preference, 2.0, r);
        }
        if let Some(r) = find(&self.superlative) {
            ev.add(Concern::Promotion, 2.0, r);
        }

        // Authority as a lever.
        if let Some(r) = find(&self.authority) {
            ev.add(Concern::Authority, 1.5, r);
        }

        // Extra actions: "also", "alongside each", "piggyback".
        if let Some(r) = find(&self.additive)
            && self.side_effect.is_match(s)
            && (orders.any() || target.is_some() || outward.is_some())
        {
            let mut w: f32 = 1.0;
            if target.is_some() || outward.is_some() {
                w += 0.5;
            }
            ev.add(Concern::SideAction, w, r);
        }

        // The reply itself.
        if let Some(r) = find(&self.reply_scope)
            && (self.reply_verb.is_match(s) || orders.any())
        {
            ev.add(Concern::Reply, 1.5, r);
        }
        if let Some(r) = find(&self.scope_creep) {
            ev.add(Concern::Reply, 2.5, r);
        }
        if let Some(r) = find(&self.marketing) {
            let w = if self.additive.is_match(s) { 3.0 } else { 2.5 };
            ev.add(Concern::SideAction, w, r);
        }
        if let Some(r) = find(&self.sabotage) {
            ev.add(Concern::Redirect, 2.5, r);
        }
        if let Some(r) = find(&self.upsell) {
            ev.add(Concern::Reply, 2.5, r);
        }
    }

    /// One finding for a sentence whose evidence weighs enough: the heaviest concern names
    /// it, the others are listed.
    fn report(&self, sink: &mut Sink<'_>, r: &Range<usize>, s: &str, orders: Orders, place: Place, ev: &Evidence) {
        if ev.found.is_empty() {
            return;
        }
        let mut score = ev.total() + orders.weight();
        if place.is_value() {
            score += 1.0;
        }
        let severity = if score >= HIGH {
            Severity::High
        } else if score >= MEDIUM {
            Severity::Medium
        } else {
            return;
        };
        let Some((main, _, at)) = ev
            .found
            .iter()
            .max_by(|a, b| a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Equal))
        else {
            return;
        };
        let also: Vec<&str> = ev
            .found
            .iter()
            .filter(|(c, _, _)| c != main)
            .map(|(c, _, _)| c.noun())
            .collect();
        let mut msg = main.rule().message.to_owned();
        if !also.is_empty() {
            msg.push_str(&format!(" (with {})", also.join(", ")));
        }
        if orders.addressee {
            msg.push_str("; it addresses the assistant");
        }
        let start = r.start + at.start.min(s.len());
        let end = r.start + at.end.min(s.len());
        sink.note(main.rule(), severity, start..end.max(start), Some(msg));
    }

    /// A value or a name that reads as an instruction: words where a value belongs.
    fn check_value(&self, sink: &mut Sink<'_>, place: Place) {
        let t = sink.text;
        let plain = t.replace(['_', '-'], " ");
        let words = plain.split_whitespace().count();
        let enough = match place {
            Place::Name => words >= 4,
            _ => words >= 5,
        };
        if !enough {
            return;
        }
        // A message shown to a person ("Please open the link") is a fine default; an order to
        // the model that moves data is not.
        let o = self.orders(&plain);
        let speaks = o.addressee
            || (o.imperative || o.directive)
                && self.transfer.is_match(&plain)
                && (self.data_object.is_match(&plain) || self.credential.is_match(&plain));
        if speaks {
            let what = if place == Place::Name {
                "a property name"
            } else {
                "a value (default, enum, example)"
            };
            let msg = format!(
                "an instruction where {what} belongs: values and names are read by the model, never shown as prose"
            );
            sink.note(&rules::INSTRUCTION_IN_VALUE, Severity::High, 0..t.len(), Some(msg));
        }
    }
}
