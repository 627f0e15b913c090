//! Word lists the generator draws from: people, job titles, offices, subjects, body text, folders.

/// Given names (ASCII and not).
pub(crate) const GIVEN: &[&str] = &[
    "Adele",
    "Alex",
    "Allan",
    "Diego",
    "Grady",
    "Henrietta",
    "Isaiah",
    "Johanna",
    "Joni",
    "Lee",
    "Lidia",
    "Lynne",
    "Megan",
    "Miriam",
    "Nestor",
    "Patti",
    "Pradeep",
    "Christie",
    "Debra",
    "Enrico",
    "Irvin",
    "Lynda",
    "Ben",
    "Emily",
    "Sofia",
    "Mateo",
    "Olivia",
    "Noah",
    "Amara",
    "Kenji",
    "Priya",
    "Lars",
    "Ingrid",
    "Omar",
];

/// Surnames.
pub(crate) const SURNAMES: &[&str] = &[
    "Vance",
    "Wilber",
    "Deyoung",
    "Soto",
    "Archie",
    "Cerrato",
    "Langer",
    "Lauer",
    "Sherman",
    "Gu",
    "Holloway",
    "Robbins",
    "Bowen",
    "Hunter",
    "Wilson",
    "Fernandes",
    "Gupta",
    "Cline",
    "Brown",
    "Hagen",
    "Ng",
    "Okafor",
    "Tanaka",
    "Nilsson",
    "Haddad",
    "Kowalski",
    "Moreau",
    "Rossi",
    "Schmidt",
    "Novak",
];

/// Display names with characters outside ASCII (RFC 2047 in headers).
pub(crate) const UNICODE_PEOPLE: &[(&str, &str)] = &[
    ("Zoë Müller", "zoe.mueller"),
    ("José Álvarez", "jose.alvarez"),
    ("Søren Kierkegård", "soren.kierkegard"),
    ("李小龍", "li.xiaolong"),
    ("Ελένη Παπαδοπούλου", "eleni.papadopoulou"),
    ("Łukasz Wiśniewski", "lukasz.wisniewski"),
];

/// Job titles.
pub(crate) const JOB_TITLES: &[&str] = &[
    "Marketing Manager",
    "Retail Manager",
    "Developer",
    "Product Manager",
    "Attorney",
    "Accountant",
    "Sales Representative",
    "IT Administrator",
    "Designer",
    "Director",
    "HR Manager",
    "Engineer",
];

/// Office locations.
pub(crate) const OFFICES: &[&str] = &[
    "18/2111", "20/1101", "131/1104", "12/1110", "24/1106", "Seattle", "London", "Berlin", "Tokyo",
];

/// External sender domains.
pub(crate) const EXTERNAL_DOMAINS: &[&str] = &[
    "fabrikam.com",
    "northwindtraders.com",
    "adventure-works.com",
    "litware.com",
    "tailspintoys.com",
    "wingtiptoys.com",
    "example.org",
    "mail.example.net",
];

/// Subject openers.
pub(crate) const SUBJECTS: &[&str] = &[
    "Quarterly report",
    "Team offsite",
    "Budget review",
    "Contract renewal",
    "Invoice",
    "Project kickoff",
    "Weekly status",
    "Customer feedback",
    "Release notes",
    "Travel itinerary",
    "Design review",
    "Hiring plan",
    "Security advisory",
    "Lunch on Friday?",
    "Board meeting minutes",
    "Expense approval",
    "Sales pipeline",
    "Onboarding checklist",
    "Migration schedule",
    "Vendor evaluation",
];

/// Subjects with characters outside ASCII.
pub(crate) const UNICODE_SUBJECTS: &[&str] = &[
    "Überprüfung der Verträge für Müller & Söhne",
    "日本語の件名: 会議の議事録",
    "Réunion d'équipe — ordre du jour",
    "Предложение по проекту",
    "Ωραία νέα για το έργο 🎉",
    "Año fiscal: presupuesto ✅",
];

/// Body words.
pub(crate) const WORDS: &[&str] = &[
    "the", "project", "team", "customer", "please", "review", "attached", "document", "schedule",
    "meeting", "budget", "update", "deadline", "approve", "next", "week", "thanks", "regards",
    "quarter", "results", "plan", "contract", "invoice", "design", "release", "feedback", "agenda",
    "notes", "follow", "up", "on", "and", "for", "with", "we", "should", "could", "would",
    "discuss", "our", "their", "latest", "numbers", "draft", "final", "version", "changes", "risk",
    "timeline", "owner", "action", "items", "to", "of", "in",
];

/// Non-ASCII sentences sprinkled into bodies.
pub(crate) const UNICODE_SENTENCES: &[&str] = &[
    "Grüße aus München — bis bald!",
    "Merci beaucoup pour votre réponse rapide.",
    "ご確認のほどよろしくお願いいたします。",
    "Спасибо за вашу помощь.",
    "¡Nos vemos en la reunión! 😊",
];

/// Shared attachments (name, MIME type, raw size): the same bytes appear in many messages.
pub(crate) const SHARED_ATTACHMENTS: &[(&str, &str, u64)] = &[
    ("Company Handbook 2025.pdf", "application/pdf", 812_345),
    ("logo.png", "image/png", 14_870),
    (
        "Q3 Results.xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        96_512,
    ),
    (
        "Travel Policy.docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        48_220,
    ),
    (
        "All-hands slides.pptx",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        3_412_998,
    ),
    ("Benefits overview.pdf", "application/pdf", 233_017),
];

/// Names for unique attachments (name, MIME type).
pub(crate) const ATTACHMENT_NAMES: &[(&str, &str)] = &[
    ("report.pdf", "application/pdf"),
    ("scan_0042.jpg", "image/jpeg"),
    ("archive.zip", "application/zip"),
    ("data export.csv", "text/csv"),
    (
        "Entwurf Vertrag – Müller.docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ),
    ("photo.heic", "image/heic"),
    ("recording.m4a", "audio/mp4"),
    ("notes.txt", "text/plain"),
];
