//! The word lists the guard reads questions with.

/// Words and endings that negate.
#[rustfmt::skip]
pub(super) const NEGATIONS: &[&str] = &[
    "not", "no", "never", "without", "none", "nobody", "nothing", "neither", "nor", "cannot", "nowhere",
    "n't",
];

/// Quantifiers and scope words, with the name they share (`every` and `all` say the same).
#[rustfmt::skip]
pub(super) const QUANTIFIERS: &[(&str, &str)] = &[
    ("all", "all"), ("every", "all"), ("each", "all"), ("few", "few"), ("fewer", "fewer"), ("most", "most"),
    ("least", "least"), ("more", "more"), ("less", "less"), ("several", "several"), ("only", "only"),
    ("just", "just"), ("both", "both"), ("either", "either"), ("first", "first"), ("last", "last"),
    ("always", "always"), ("sometimes", "sometimes"), ("often", "often"), ("rarely", "rarely"),
    ("usually", "usually"), ("single", "single"), ("multiple", "multiple"), ("once", "once"),
    ("twice", "twice"), ("max", "maximum"), ("maximum", "maximum"), ("min", "minimum"),
    ("minimum", "minimum"), ("exactly", "exactly"), ("over", "over"), ("under", "under"),
    ("above", "above"), ("below", "below"), ("per", "per"), ("entire", "all"), ("whole", "all"),
    ("partial", "partial"), ("half", "half"), ("double", "double"), ("triple", "triple"),
    ("majority", "majority"), ("minority", "minority"), ("except", "except"), ("also", "also"),
    ("too", "too"), ("earliest", "earliest"), ("latest", "latest"), ("next", "next"),
    ("previous", "previous"),
];

/// Words that name a time, with the name their spellings share.
#[rustfmt::skip]
pub(super) const DATE_WORDS: &[(&str, &str)] = &[
    ("today", "today"), ("tomorrow", "tomorrow"), ("yesterday", "yesterday"), ("tonight", "tonight"),
    ("now", "now"), ("ago", "ago"), ("weekend", "weekend"), ("weekday", "weekday"), ("morning", "morning"),
    ("afternoon", "afternoon"), ("evening", "evening"), ("night", "night"), ("noon", "noon"),
    ("midnight", "midnight"), ("january", "january"), ("february", "february"), ("march", "march"),
    ("april", "april"), ("may", "may"), ("june", "june"), ("july", "july"), ("august", "august"),
    ("september", "september"), ("october", "october"), ("november", "november"), ("december", "december"),
    ("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"), ("jun", "june"),
    ("jul", "july"), ("aug", "august"), ("sep", "september"), ("sept", "september"), ("oct", "october"),
    ("nov", "november"), ("dec", "december"), ("monday", "monday"), ("tuesday", "tuesday"),
    ("wednesday", "wednesday"), ("thursday", "thursday"), ("friday", "friday"), ("saturday", "saturday"),
    ("sunday", "sunday"), ("spring", "spring"), ("summer", "summer"), ("autumn", "autumn"),
    ("fall", "autumn"), ("winter", "winter"), ("daily", "daily"), ("weekly", "weekly"),
    ("monthly", "monthly"), ("yearly", "yearly"), ("annual", "yearly"), ("annually", "yearly"),
    ("quarterly", "quarterly"), ("hourly", "hourly"), ("q1", "q1"), ("q2", "q2"), ("q3", "q3"),
    ("q4", "q4"),
];

/// Periods said as "every …" / "per …", and the date word they mean.
#[rustfmt::skip]
pub(super) const PERIODS: &[(&str, &str)] = &[
    ("day", "daily"), ("week", "weekly"), ("month", "monthly"), ("year", "yearly"), ("hour", "hourly"),
    ("quarter", "quarterly"),
];

/// Units and currencies, each with the canonical name its spellings share.
#[rustfmt::skip]
pub(super) const UNITS: &[(&str, &str)] = &[
    ("km", "km"), ("kilometer", "km"), ("kilometre", "km"), ("kilometers", "km"), ("kilometres", "km"),
    ("mile", "mile"), ("miles", "mile"), ("mi", "mile"), ("m", "m"), ("meter", "m"), ("metre", "m"),
    ("meters", "m"), ("metres", "m"), ("cm", "cm"), ("mm", "mm"), ("inch", "inch"), ("inches", "inch"),
    ("in.", "inch"), ("ft", "ft"), ("foot", "ft"), ("feet", "ft"), ("yard", "yard"), ("yards", "yard"),
    ("kg", "kg"), ("kilo", "kg"), ("kilos", "kg"), ("kilogram", "kg"), ("kilograms", "kg"), ("g", "g"),
    ("gram", "g"), ("grams", "g"), ("mg", "mg"), ("milligram", "mg"), ("milligrams", "mg"), ("mcg", "mcg"),
    ("µg", "mcg"), ("lb", "lb"), ("lbs", "lb"), ("pound", "lb"), ("pounds", "lb"), ("oz", "oz"),
    ("ounce", "oz"), ("ounces", "oz"), ("ton", "ton"), ("tons", "ton"), ("tonne", "tonne"),
    ("tonnes", "tonne"), ("l", "l"), ("liter", "l"), ("litre", "l"), ("liters", "l"), ("litres", "l"),
    ("ml", "ml"), ("milliliter", "ml"), ("millilitre", "ml"), ("milliliters", "ml"), ("gallon", "gallon"),
    ("gallons", "gallon"), ("cup", "cup"), ("cups", "cup"), ("tbsp", "tbsp"), ("tablespoon", "tbsp"),
    ("tablespoons", "tbsp"), ("tsp", "tsp"), ("teaspoon", "tsp"), ("teaspoons", "tsp"), ("celsius", "c"),
    ("°c", "c"), ("fahrenheit", "f"), ("°f", "f"), ("kelvin", "k"), ("second", "s"), ("seconds", "s"),
    ("sec", "s"), ("secs", "s"), ("ms", "ms"), ("millisecond", "ms"), ("milliseconds", "ms"),
    ("minute", "min"), ("minutes", "min"), ("mins", "min"), ("hour", "h"), ("hours", "h"), ("hr", "h"),
    ("hrs", "h"), ("day", "day"), ("days", "day"), ("week", "week"), ("weeks", "week"), ("month", "month"),
    ("months", "month"), ("year", "year"), ("years", "year"), ("decade", "decade"), ("decades", "decade"),
    ("percent", "%"), ("%", "%"), ("$", "usd"), ("usd", "usd"), ("dollar", "usd"), ("dollars", "usd"),
    ("€", "eur"), ("eur", "eur"), ("euro", "eur"), ("euros", "eur"), ("£", "gbp"), ("gbp", "gbp"),
    ("¥", "jpy"), ("yen", "jpy"), ("jpy", "jpy"), ("kb", "kb"), ("mb", "mb"), ("gb", "gb"), ("tb", "tb"),
    ("kib", "kib"), ("mib", "mib"), ("gib", "gib"), ("mbps", "mbps"), ("gbps", "gbps"), ("kw", "kw"),
    ("kwh", "kwh"), ("w", "w"), ("watt", "w"), ("watts", "w"), ("v", "v"), ("volt", "v"), ("volts", "v"),
    ("mph", "mph"), ("kph", "kph"), ("calorie", "cal"), ("calories", "cal"), ("kcal", "kcal"),
    ("tablet", "tablet"), ("tablets", "tablet"), ("pill", "pill"), ("pills", "pill"), ("dose", "dose"),
    ("doses", "dose"), ("px", "px"), ("pt", "pt"), ("em", "em"), ("rem", "rem"), ("dpi", "dpi"),
    ("ghz", "ghz"), ("mhz", "mhz"), ("hz", "hz"), ("acre", "acre"), ("acres", "acre"), ("hectare", "ha"),
    ("hectares", "ha"), ("sqft", "sqft"), ("bar", "bar"), ("psi", "psi"),
];

/// Pairs of words with opposite meanings (either order).
#[rustfmt::skip]
pub(super) const ANTONYMS: &[(&str, &str)] = &[
    ("safe", "dangerous"), ("safe", "unsafe"), ("safe", "harmful"), ("safe", "risky"), ("good", "bad"),
    ("better", "worse"), ("best", "worst"), ("increase", "decrease"), ("increase", "reduce"),
    ("raise", "lower"), ("up", "down"), ("upgrade", "downgrade"), ("upload", "download"),
    ("before", "after"), ("early", "late"), ("earlier", "later"), ("earliest", "latest"), ("first", "last"),
    ("start", "end"), ("start", "stop"), ("begin", "end"), ("open", "close"), ("open", "closed"),
    ("enable", "disable"), ("enabled", "disabled"), ("on", "off"), ("allow", "deny"), ("allow", "block"),
    ("allowed", "forbidden"), ("accept", "reject"), ("approve", "reject"), ("add", "remove"),
    ("add", "delete"), ("insert", "delete"), ("create", "delete"), ("create", "destroy"),
    ("install", "uninstall"), ("include", "exclude"), ("import", "export"), ("buy", "sell"),
    ("buying", "selling"), ("lend", "borrow"), ("give", "take"), ("send", "receive"), ("push", "pull"),
    ("win", "lose"), ("gain", "loss"), ("profit", "loss"), ("credit", "debit"), ("income", "expense"),
    ("asset", "liability"), ("deposit", "withdraw"), ("deposit", "withdrawal"), ("hot", "cold"),
    ("warm", "cool"), ("high", "low"), ("higher", "lower"), ("highest", "lowest"), ("max", "min"),
    ("maximum", "minimum"), ("more", "less"), ("more", "fewer"), ("most", "least"), ("big", "small"),
    ("bigger", "smaller"), ("biggest", "smallest"), ("large", "small"), ("larger", "smaller"),
    ("largest", "smallest"), ("long", "short"), ("longer", "shorter"), ("fast", "slow"),
    ("faster", "slower"), ("fastest", "slowest"), ("cheap", "expensive"), ("cheaper", "expensive"),
    ("cheapest", "expensive"), ("cheaper", "pricier"), ("heavy", "light"), ("light", "dark"),
    ("strong", "weak"), ("easy", "hard"), ("easy", "difficult"), ("simple", "complex"), ("true", "false"),
    ("yes", "no"), ("right", "wrong"), ("right", "left"), ("correct", "incorrect"), ("legal", "illegal"),
    ("valid", "invalid"), ("possible", "impossible"), ("public", "private"), ("internal", "external"),
    ("inside", "outside"), ("input", "output"), ("inbound", "outbound"), ("ingress", "egress"),
    ("import", "export"), ("encrypt", "decrypt"), ("encode", "decode"), ("compress", "decompress"),
    ("serialize", "deserialize"), ("lock", "unlock"), ("mount", "unmount"), ("subscribe", "unsubscribe"),
    ("follow", "unfollow"), ("connect", "disconnect"), ("login", "logout"), ("sign", "unsign"),
    ("attach", "detach"), ("ascending", "descending"), ("asc", "desc"), ("horizontal", "vertical"),
    ("north", "south"), ("east", "west"), ("above", "below"), ("over", "under"), ("top", "bottom"),
    ("front", "back"), ("forward", "backward"), ("positive", "negative"), ("plus", "minus"),
    ("add", "subtract"), ("multiply", "divide"), ("sum", "difference"), ("male", "female"),
    ("men", "women"), ("man", "woman"), ("boy", "girl"), ("adult", "child"), ("adults", "children"),
    ("old", "new"), ("old", "young"), ("older", "newer"), ("older", "younger"), ("oldest", "newest"),
    ("past", "future"), ("arrive", "depart"), ("arrival", "departure"), ("arrivals", "departures"),
    ("inbound", "outbound"), ("import", "export"), ("client", "server"), ("frontend", "backend"),
    ("read", "write"), ("get", "set"), ("get", "post"), ("success", "failure"), ("pass", "fail"),
    ("passed", "failed"), ("love", "hate"), ("like", "dislike"), ("agree", "disagree"), ("always", "never"),
    ("all", "none"), ("everyone", "nobody"), ("everything", "nothing"), ("with", "without"),
    ("include", "without"), ("wet", "dry"), ("full", "empty"), ("rich", "poor"), ("alive", "dead"),
    ("healthy", "sick"), ("raw", "cooked"), ("rise", "fall"), ("rising", "falling"), ("gross", "net"),
    ("pre", "post"), ("prefix", "suffix"), ("min", "max"), ("sunrise", "sunset"), ("mean", "median"),
    ("stack", "queue"), ("sync", "async"), ("synchronous", "asynchronous"), ("upper", "lower"),
    ("uppercase", "lowercase"), ("inner", "outer"), ("join", "leave"), ("hire", "fire"),
    ("employer", "employee"), ("landlord", "tenant"), ("buyer", "seller"), ("debtor", "creditor"),
    ("sender", "recipient"), ("parent", "child"), ("source", "destination"),
];

/// Opposite directions: one side's word against the other's, never compared for order (a
/// reordered "to the airport from downtown" means the same; the anchors check their targets).
#[rustfmt::skip]
pub(super) const DIRECTIONS: &[(&str, &str)] = &[
    ("from", "to"), ("into", "out"), ("toward", "away"), ("towards", "away"),
];

/// Prefixes that turn a word into its opposite.
#[rustfmt::skip]
pub(super) const OPPOSING_PREFIXES: &[&str] = &[
    "un", "in", "im", "il", "ir", "dis", "non", "non-", "de", "anti",
];

/// Numbers written as words. ("one" is left out: it is as often a pronoun.)
#[rustfmt::skip]
pub(super) const NUMBER_WORDS: &[(&str, &str)] = &[
    ("zero", "0"), ("two", "2"), ("three", "3"), ("four", "4"), ("five", "5"), ("six", "6"),
    ("seven", "7"), ("eight", "8"), ("nine", "9"), ("ten", "10"), ("eleven", "11"), ("twelve", "12"),
    ("thirteen", "13"), ("fourteen", "14"), ("fifteen", "15"), ("sixteen", "16"), ("seventeen", "17"),
    ("eighteen", "18"), ("nineteen", "19"), ("twenty", "20"), ("thirty", "30"), ("forty", "40"),
    ("fifty", "50"), ("sixty", "60"), ("seventy", "70"), ("eighty", "80"), ("ninety", "90"),
    ("hundred", "100"), ("thousand", "1000"), ("million", "1000000"), ("billion", "1000000000"),
    ("dozen", "12"), ("half", "0.5"), ("quarter", "0.25"), ("second", "2nd"), ("third", "3rd"),
    ("fourth", "4th"), ("fifth", "5th"),
];

/// Words that point at a role in the sentence (a source, a target, a comparison): the word
/// each is followed by must be the same on both sides ("from checking to savings" is not "from
/// savings to checking").
#[rustfmt::skip]
pub(super) const ANCHORS: &[&str] = &[
    "from", "to", "into", "than", "versus", "vs", "per", "onto", "toward", "towards",
];

/// Words skipped when looking for the word an anchor points at.
#[rustfmt::skip]
pub(super) const FILLER: &[&str] = &[
    "a", "an", "the", "my", "your", "our", "their", "his", "her", "its", "this", "that", "these", "those",
    "some",
];

/// Words that start with a capital for reasons other than being a name.
#[rustfmt::skip]
pub(super) const CAPITALISED_COMMON: &[&str] = &[
    "i", "i'm", "i've", "i'd", "i'll", "ok", "okay", "hi", "hello", "hey", "please", "thanks",
];

/// Words a question may swap one for another without changing what it asks.
#[rustfmt::skip]
pub(super) const INTERCHANGEABLE: &[&str] = &[
    "a", "an", "the", "can", "could", "would", "will", "may", "might", "should", "do", "does", "how",
    "what", "i", "me", "my", "we", "our", "us", "you", "your", "please", "is", "are", "it", "this", "that",
];
