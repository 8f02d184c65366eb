"""Generate the synthetic ``support-triage`` example dataset and its replay logs.

Run from the project root::

    python data/make_support_triage.py

It writes, into ``data/support_triage/``:

``train.parquet`` (3000 rows) and ``test.parquet`` (1200 rows)
    Support tickets to route to one of six queues. Columns: ``ticket_id`` (``T012345``,
    unique across both files, increasing with creation time), ``text`` (1-3 sentences),
    ``channel`` (email/chat/web/phone), ``language`` (en/de/fr/es, about 50/20/15/15 %),
    ``created_at`` (``date32``, the 90 days ending 2026-11-24) and ``label``
    (billing/technical/account/shipping/refund/other).

``logs/gpt-4o-mini.parquet`` and ``logs/llama-3.1-8b.parquet``
    "Replay" logs: one simulated production response per *test* ticket. Columns:
    ``ticket_id``, ``output``, ``prompt_tokens``, ``completion_tokens``, ``latency_s``,
    ``logged_at`` (``timestamp[us, tz=UTC]``).

How the tickets are made
    Every ticket draws a language, channel, label and creation date, then its text is
    assembled from hand-written per-language, per-label sentence templates whose slots are
    filled with random product and plan names, order/invoice/tracking numbers, amounts,
    error codes, cities and user names. Channel-dependent framing is added (greetings for
    email, terse lower-case chat messages, an agent's prefix for phone calls), shared noise
    sentences ("This is urgent.") are sprinkled in, and about 12 % of tickets get one or two
    typos. Two kinds of hard tickets keep the task from being trivial: *mixed* tickets
    (~16 %) pair a sentence of the true label with one of a plausibly confusable label
    (billing/refund, account/technical, shipping/refund, ...) in either order, and *vague*
    tickets (~10 %) say nothing specific ("Something is wrong with my order #4821937.").
    A TF-IDF + logistic-regression baseline trained on train scores about 0.85 on test.

How the logged responses are made
    No model was called. For each model and language, exactly round(n * target) test
    tickets are answered with the right label (targets below); which ones is random but
    weighted, so mixed and vague tickets are more often wrong. Wrong answers are the other
    topic of a mixed ticket, "other" for a vague one, or a draw from a table of plausible
    confusions (billing<->refund, account<->technical, shipping<->refund), never uniform.
    The targets count the label an answer names; a normalising exact match, which rejects
    verbose answers, scores gpt-4o-mini about a point lower.

    ============  =======  =======  =======  =======
    model          en       de       fr       es
    ============  =======  =======  =======  =======
    gpt-4o-mini    0.89     0.885    0.88     0.85
    llama-3.1-8b   0.87     0.70     0.70     0.80
    ============  =======  =======  =======  =======

    gpt-4o-mini answers with the bare label 94 % of the time, a variant that a normalising
    exact match accepts ("Billing", "billing.", " technical\\n") 5 % and a verbose sentence
    ("The category is: refund") 1 %. llama-3.1-8b answers with a label outside the label set
    ("complaint", "unknown", ...) in about 2 % of rows and with a case/whitespace variant
    in 3 %. ``prompt_tokens`` is a fixed system+instruction overhead (~60) plus about
    ``len(text) / 4``; ``completion_tokens`` is 1-4 for a bare label and more for verbose
    answers; ``latency_s`` is lognormal (median ~0.55 s for gpt-4o-mini, ~0.28 s for
    llama-3.1-8b) plus small per-token terms; ``logged_at`` is the ticket's creation date
    plus its arrival time of day plus the latency.

Determinism
    Everything is drawn from ``numpy.random.default_rng`` streams spawned from one fixed
    seed, rows are sorted by ``ticket_id`` and tables are written by pyarrow with an
    explicit schema and zstd compression, so running the script twice produces byte-identical
    files (for the same numpy/pyarrow versions). Only numpy and pyarrow are imported.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SEED = 20261124
N_TRAIN = 3000
N_TEST = 1200
END_DATE = dt.date(2026, 11, 24)
N_DAYS = 90

OUT_DIR = Path(__file__).resolve().parent / "support_triage"

LABELS = ["billing", "technical", "account", "shipping", "refund", "other"]
LABEL_P = [0.19, 0.24, 0.17, 0.16, 0.14, 0.10]
LANGS = ["en", "de", "fr", "es"]
LANG_P = [0.50, 0.20, 0.15, 0.15]
CHANNELS = ["email", "chat", "web", "phone"]
CHANNEL_P = [0.40, 0.30, 0.20, 0.10]

# Difficulty of a ticket: clean (one topic), mixed (two confusable topics), vague (no topic).
CLEAN, MIXED, VAGUE = 0, 1, 2
DIFFICULTY_P = [0.72, 0.18, 0.10]

# Plausible confusions: for each true label, how a wrong answer (or the second topic of a
# mixed ticket) is distributed over the other labels.
CONFUSION = {
    "billing": {"refund": 0.55, "account": 0.20, "technical": 0.10, "other": 0.10, "shipping": 0.05},
    "refund": {"billing": 0.50, "shipping": 0.30, "other": 0.10, "account": 0.10},
    "account": {"technical": 0.55, "billing": 0.20, "other": 0.15, "refund": 0.10},
    "technical": {"account": 0.55, "other": 0.20, "billing": 0.15, "shipping": 0.10},
    "shipping": {"refund": 0.55, "other": 0.20, "technical": 0.15, "billing": 0.10},
    "other": {"technical": 0.25, "account": 0.20, "billing": 0.20, "shipping": 0.20, "refund": 0.15},
}
# The second topic of a mixed ticket ("other" tickets are never mixed).
MIXED_PARTNER = {
    "billing": {"refund": 0.60, "account": 0.25, "technical": 0.15},
    "refund": {"billing": 0.55, "shipping": 0.45},
    "account": {"technical": 0.70, "billing": 0.30},
    "technical": {"account": 0.75, "shipping": 0.25},
    "shipping": {"refund": 0.80, "billing": 0.20},
}

DEVICES = [
    "Nimbus X2",
    "Vertex 14",
    "SoundWave Buds",
    "PixelCam 4K",
    "StreamBox 2",
    "FitTrack 3",
    "Aurora S",
    "HomeHub Mini",
    "TurboCharge 20",
    "Orbit Pad",
    "Lumen Go",
    "Kestrel 5",
]
PLANS = ["Cloud Backup Pro", "StreamBox Premium", "HomeHub Plus", "FitTrack Coach", "SecureNet Family", "Orbit Unlimited"]
USER_STEMS = ["mkoch", "anna.l", "jdupont", "lgarcia", "tom_b", "sofia", "pmartin", "kwagner", "emma.r", "carlos"]

# --------------------------------------------------------------------------------------
# Per-language text. Slots: {device} {plan} {order} {invoice} {tracking} {amount} {last4}
# {days} {errcode} {user} {city}.
# --------------------------------------------------------------------------------------

TEXT = {
    "en": {
        "billing": [
            "I was charged twice for my {plan} subscription this month.",
            "My invoice {invoice} shows {amount} but the price on your website was lower.",
            "Why was my card ending in {last4} charged {amount} without any notice?",
            "The VAT on invoice {invoice} looks wrong, can you issue a corrected invoice?",
            "My payment for order {order} was declined even though the card is valid.",
            "I'd like to switch from monthly to annual billing for my {plan} plan.",
            "There is an unexpected charge of {amount} from you on my credit card statement.",
            "The direct debit for {amount} failed and now I see a late payment fee.",
            "Can you send me a copy of invoice {invoice} as a PDF for my accountant?",
        ],
        "refund": [
            "I returned the {device} {days} days ago and still haven't received my refund.",
            "Please refund order {order}, the item arrived damaged.",
            "I want my money back for the {device}, it does not work as advertised.",
            "I cancelled within the 14-day window, when will the {amount} be refunded?",
            "Your agent promised a refund of {amount} but nothing has reached my account yet.",
            "Can I get a refund instead of a replacement for order {order}?",
            "Your warehouse received my return last week, please process the refund.",
        ],
        "account": [
            "I can't log in to my account, it says my password is incorrect.",
            "The password reset email never arrives, I already checked the spam folder.",
            "How do I change the email address linked to my account?",
            "My account has been locked after too many login attempts.",
            "Please delete my account and all my personal data (GDPR request).",
            "I'm not receiving the two-factor authentication code by SMS anymore.",
            "Someone else seems to have accessed my account, I see orders I did not place.",
            "I want to merge my two accounts into one, my username is {user}.",
        ],
        "technical": [
            "The {device} keeps disconnecting from Wi-Fi every few minutes.",
            "After the latest firmware update my {device} won't turn on.",
            "The app crashes as soon as I open the settings page on Android.",
            "I get error {errcode} when I try to sync my {device}.",
            "The {device} overheats and the fan is very loud.",
            "Bluetooth pairing with my {device} fails every time.",
            "The screen of my {device} flickers since yesterday, I already tried a reset.",
        ],
        "shipping": [
            "My order {order} has not arrived yet, it was supposed to be delivered {days} days ago.",
            "The tracking number {tracking} hasn't updated in a week.",
            "Can I still change the delivery address for order {order} because I'm moving?",
            "The courier says the package was delivered but I never received it.",
            "Do you ship the {device} to Canada and how long does delivery take?",
            "My parcel is stuck in customs, what do I need to do?",
            "Only one of the two boxes for order {order} was delivered.",
        ],
        "other": [
            "Do you have a physical store in {city}?",
            "I just wanted to say your support team was very helpful last week, thank you!",
            "Are you hiring? I'd like to send my CV for a position in {city}.",
            "We are a retailer interested in a partnership, who should we contact?",
            "What are your customer service opening hours on weekends?",
            "I'm a journalist writing about smart home devices, is there a press contact?",
            "A suggestion: please offer the {device} in more colours.",
        ],
        "vague": [
            "I have a problem with my {device}, please help.",
            "Please call me back about order {order} as soon as possible.",
            "Nothing works the way it should and I'm really frustrated.",
            "I already wrote to you twice and nobody answered.",
            "Something is wrong with my order {order}.",
            "Can someone from your team contact me about my {device}?",
        ],
        "noise": [
            "This is urgent.",
            "Thanks in advance.",
            "I've been a customer for years.",
            "Please get back to me quickly.",
            "I hope you can help.",
            "Best regards.",
        ],
        "greet": ["Hi,", "Hello,", "Dear support team,", "Hey,", "Good morning,"],
        "phone": ["Customer called:", "Caller reports:", "Phone note:"],
        "cities": ["London", "Manchester", "Chicago", "Dublin", "Sydney", "Toronto"],
        "currency": ("${}", "."),
    },
    "de": {
        "billing": [
            "Mir wurde das {plan}-Abo diesen Monat doppelt berechnet.",
            "Auf meiner Rechnung {invoice} stehen {amount}, auf der Website war der Preis niedriger.",
            "Warum wurde meine Karte mit der Endung {last4} ohne Ankündigung mit {amount} belastet?",
            "Die Mehrwertsteuer auf Rechnung {invoice} ist falsch, bitte schicken Sie eine korrigierte Rechnung.",
            "Meine Zahlung für Bestellung {order} wurde abgelehnt, obwohl die Karte gültig ist.",
            "Ich möchte bei meinem {plan}-Tarif von monatlicher auf jährliche Abrechnung wechseln.",
            "Auf meiner Kreditkartenabrechnung ist eine unerwartete Abbuchung über {amount} von Ihnen.",
            "Die Lastschrift über {amount} ist fehlgeschlagen und jetzt wird mir eine Mahngebühr berechnet.",
            "Können Sie mir die Rechnung {invoice} als PDF für meinen Steuerberater schicken?",
        ],
        "refund": [
            "Ich habe den {device} vor {days} Tagen zurückgeschickt und noch keine Erstattung erhalten.",
            "Bitte erstatten Sie Bestellung {order}, der Artikel kam beschädigt an.",
            "Ich möchte mein Geld für den {device} zurück, er funktioniert nicht wie beschrieben.",
            "Ich habe innerhalb der 14-tägigen Widerrufsfrist storniert, wann werden die {amount} zurückerstattet?",
            "Ihr Mitarbeiter hat mir eine Rückerstattung von {amount} zugesagt, aber bisher ist nichts angekommen.",
            "Kann ich für Bestellung {order} statt eines Ersatzgeräts mein Geld zurückbekommen?",
            "Meine Retoure ist laut Sendungsverfolgung bei Ihnen angekommen, bitte veranlassen Sie die Gutschrift.",
        ],
        "account": [
            "Ich kann mich nicht in mein Konto einloggen, angeblich ist mein Passwort falsch.",
            "Die E-Mail zum Zurücksetzen des Passworts kommt nie an, im Spam-Ordner ist auch nichts.",
            "Wie kann ich die E-Mail-Adresse meines Kundenkontos ändern?",
            "Mein Konto wurde nach zu vielen Anmeldeversuchen gesperrt.",
            "Bitte löschen Sie mein Konto und alle meine Daten gemäß DSGVO.",
            "Ich bekomme den Code für die Zwei-Faktor-Anmeldung nicht mehr per SMS.",
            "Jemand anderes hat anscheinend Zugriff auf mein Konto, dort sind Bestellungen, die ich nicht getätigt habe.",
            "Ich möchte meine zwei Benutzerkonten zusammenlegen, mein Benutzername ist {user}.",
        ],
        "technical": [
            "Der {device} verliert alle paar Minuten die WLAN-Verbindung.",
            "Nach dem letzten Firmware-Update lässt sich mein {device} nicht mehr einschalten.",
            "Die App stürzt ab, sobald ich auf Android die Einstellungen öffne.",
            "Beim Synchronisieren meines {device} erscheint der Fehler {errcode}.",
            "Der {device} wird sehr heiß und der Lüfter ist extrem laut.",
            "Die Bluetooth-Kopplung mit meinem {device} schlägt jedes Mal fehl.",
            "Der Bildschirm meines {device} flackert seit gestern, ein Neustart hat nicht geholfen.",
        ],
        "shipping": [
            "Meine Bestellung {order} ist noch nicht angekommen, sie hätte vor {days} Tagen geliefert werden sollen.",
            "Die Sendungsnummer {tracking} wurde seit einer Woche nicht aktualisiert.",
            "Kann ich die Lieferadresse für Bestellung {order} noch ändern, da ich umziehe?",
            "Laut Paketdienst wurde das Paket zugestellt, aber ich habe nichts erhalten.",
            "Liefern Sie den {device} auch nach Österreich und wie lange dauert der Versand?",
            "Mein Paket hängt beim Zoll fest, was muss ich tun?",
            "Von Bestellung {order} wurde nur eines von zwei Paketen geliefert.",
        ],
        "other": [
            "Haben Sie ein Geschäft in {city}?",
            "Ich wollte nur sagen, dass Ihr Support letzte Woche sehr hilfsbereit war, danke!",
            "Stellen Sie gerade ein? Ich würde gern meinen Lebenslauf für eine Stelle in {city} schicken.",
            "Wir sind ein Händler und an einer Partnerschaft interessiert, an wen können wir uns wenden?",
            "Wie sind die Öffnungszeiten Ihres Kundenservice am Wochenende?",
            "Ich bin Journalistin und schreibe über Smart-Home-Geräte, gibt es einen Pressekontakt?",
            "Ein Vorschlag: Bieten Sie den {device} doch bitte in mehr Farben an.",
        ],
        "vague": [
            "Ich habe ein Problem mit meinem {device}, bitte helfen Sie mir.",
            "Bitte rufen Sie mich wegen Bestellung {order} so schnell wie möglich zurück.",
            "Nichts funktioniert so, wie es soll, ich bin wirklich frustriert.",
            "Ich habe Ihnen schon zweimal geschrieben und keine Antwort bekommen.",
            "Mit meiner Bestellung {order} stimmt etwas nicht.",
            "Kann sich bitte jemand wegen meines {device} bei mir melden?",
        ],
        "noise": [
            "Es ist dringend.",
            "Vielen Dank im Voraus.",
            "Ich bin seit Jahren Kunde bei Ihnen.",
            "Bitte antworten Sie schnell.",
            "Ich hoffe, Sie können mir helfen.",
            "Mit freundlichen Grüßen.",
        ],
        "greet": ["Hallo,", "Guten Tag,", "Sehr geehrte Damen und Herren,", "Hallo zusammen,"],
        "phone": ["Kunde hat angerufen:", "Anrufnotiz:", "Telefonat:"],
        "cities": ["Berlin", "München", "Hamburg", "Köln", "Wien", "Zürich"],
        "currency": ("{} €", ","),
    },
    "fr": {
        "billing": [
            "Mon abonnement {plan} m'a été facturé deux fois ce mois-ci.",
            "Ma facture {invoice} indique {amount} alors que le prix sur votre site était plus bas.",
            "Pourquoi ma carte se terminant par {last4} a-t-elle été débitée de {amount} sans préavis ?",
            "La TVA sur la facture {invoice} est incorrecte, pouvez-vous m'envoyer une facture corrigée ?",
            "Mon paiement pour la commande {order} a été refusé alors que ma carte est valide.",
            "Je voudrais passer d'une facturation mensuelle à annuelle pour mon forfait {plan}.",
            "Il y a un prélèvement inattendu de {amount} de votre part sur mon relevé bancaire.",
            "Le prélèvement de {amount} a échoué et maintenant je vois des frais de retard.",
            "Pouvez-vous m'envoyer la facture {invoice} en PDF pour mon comptable ?",
        ],
        "refund": [
            "J'ai renvoyé le {device} il y a {days} jours et je n'ai toujours pas été remboursé.",
            "Merci de rembourser la commande {order}, l'article est arrivé endommagé.",
            "Je veux être remboursé pour le {device}, il ne fonctionne pas comme annoncé.",
            "J'ai annulé dans le délai de rétractation de 14 jours, quand serai-je remboursé des {amount} ?",
            "Votre conseiller m'a promis un remboursement de {amount} mais je n'ai rien reçu.",
            "Puis-je obtenir un remboursement au lieu d'un échange pour la commande {order} ?",
            "Votre entrepôt a bien reçu mon retour, merci de procéder au remboursement.",
        ],
        "account": [
            "Je n'arrive pas à me connecter à mon compte, il indique que mon mot de passe est incorrect.",
            "L'e-mail de réinitialisation du mot de passe n'arrive jamais, j'ai vérifié les spams.",
            "Comment modifier l'adresse e-mail associée à mon compte ?",
            "Mon compte a été bloqué après trop de tentatives de connexion.",
            "Merci de supprimer mon compte et toutes mes données personnelles (RGPD).",
            "Je ne reçois plus le code de double authentification par SMS.",
            "Quelqu'un semble avoir accédé à mon compte, je vois des commandes que je n'ai pas passées.",
            "Je souhaite fusionner mes deux comptes, mon identifiant est {user}.",
        ],
        "technical": [
            "Le {device} se déconnecte du Wi-Fi toutes les quelques minutes.",
            "Depuis la dernière mise à jour du firmware, mon {device} ne s'allume plus.",
            "L'application plante dès que j'ouvre les paramètres sur Android.",
            "J'obtiens l'erreur {errcode} quand j'essaie de synchroniser mon {device}.",
            "Le {device} chauffe beaucoup et le ventilateur est très bruyant.",
            "L'appairage Bluetooth avec mon {device} échoue à chaque fois.",
            "L'écran de mon {device} scintille depuis hier, j'ai déjà essayé de le réinitialiser.",
        ],
        "shipping": [
            "Ma commande {order} n'est toujours pas arrivée, elle devait être livrée il y a {days} jours.",
            "Le numéro de suivi {tracking} n'a pas été mis à jour depuis une semaine.",
            "Puis-je encore changer l'adresse de livraison de la commande {order} car je déménage ?",
            "Le transporteur dit que le colis a été livré mais je ne l'ai jamais reçu.",
            "Livrez-vous le {device} en Belgique et quels sont les délais de livraison ?",
            "Mon colis est bloqué à la douane, que dois-je faire ?",
            "Un seul des deux colis de la commande {order} a été livré.",
        ],
        "other": [
            "Avez-vous un magasin à {city} ?",
            "Je voulais juste dire que votre service client a été très utile la semaine dernière, merci !",
            "Recrutez-vous ? J'aimerais envoyer mon CV pour un poste à {city}.",
            "Nous sommes un revendeur intéressé par un partenariat, qui pouvons-nous contacter ?",
            "Quels sont les horaires du service client le week-end ?",
            "Je suis journaliste et j'écris sur la maison connectée, avez-vous un contact presse ?",
            "Une suggestion : proposez le {device} dans plus de couleurs.",
        ],
        "vague": [
            "J'ai un problème avec mon {device}, aidez-moi s'il vous plaît.",
            "Merci de me rappeler au sujet de la commande {order} dès que possible.",
            "Rien ne fonctionne comme prévu, je suis vraiment agacé.",
            "Je vous ai déjà écrit deux fois sans réponse.",
            "Il y a un souci avec ma commande {order}.",
            "Quelqu'un peut-il me contacter à propos de mon {device} ?",
        ],
        "noise": [
            "C'est urgent.",
            "Merci d'avance.",
            "Je suis client depuis des années.",
            "Merci de répondre rapidement.",
            "J'espère que vous pourrez m'aider.",
            "Cordialement.",
        ],
        "greet": ["Bonjour,", "Bonsoir,", "Madame, Monsieur,", "Salut,"],
        "phone": ["Appel client :", "Note d'appel :", "Le client a appelé :"],
        "cities": ["Paris", "Lyon", "Marseille", "Bruxelles", "Genève", "Montréal"],
        "currency": ("{} €", ","),
    },
    "es": {
        "billing": [
            "Me han cobrado dos veces la suscripción de {plan} este mes.",
            "Mi factura {invoice} indica {amount}, pero el precio en su web era más bajo.",
            "¿Por qué se han cargado {amount} en mi tarjeta terminada en {last4} sin previo aviso?",
            "El IVA de la factura {invoice} es incorrecto, ¿pueden enviarme una factura corregida?",
            "Mi pago del pedido {order} fue rechazado aunque la tarjeta es válida.",
            "Quiero cambiar de facturación mensual a anual en mi plan {plan}.",
            "Hay un cargo inesperado de {amount} de su empresa en el extracto de mi tarjeta.",
            "La domiciliación de {amount} falló y ahora me cobran un recargo por demora.",
            "¿Me pueden enviar la factura {invoice} en PDF para mi gestor?",
        ],
        "refund": [
            "Devolví el {device} hace {days} días y todavía no he recibido el reembolso.",
            "Por favor, reembolsen el pedido {order}, el artículo llegó dañado.",
            "Quiero que me devuelvan el dinero del {device}, no funciona como se anunciaba.",
            "Cancelé dentro del plazo de desistimiento de 14 días, ¿cuándo me devolverán los {amount}?",
            "Su agente me prometió un reembolso de {amount} pero todavía no me ha llegado nada.",
            "¿Puedo obtener un reembolso en lugar de un cambio para el pedido {order}?",
            "Su almacén ya recibió mi devolución, por favor tramiten el reembolso.",
        ],
        "account": [
            "No puedo iniciar sesión en mi cuenta, dice que la contraseña es incorrecta.",
            "Nunca me llega el correo para restablecer la contraseña, ya revisé la carpeta de spam.",
            "¿Cómo cambio el correo electrónico asociado a mi cuenta?",
            "Mi cuenta se ha bloqueado después de demasiados intentos de inicio de sesión.",
            "Por favor, eliminen mi cuenta y todos mis datos personales (RGPD).",
            "Ya no recibo el código de verificación en dos pasos por SMS.",
            "Parece que alguien ha accedido a mi cuenta, veo pedidos que yo no hice.",
            "Quiero unificar mis dos cuentas, mi usuario es {user}.",
        ],
        "technical": [
            "El {device} se desconecta del wifi cada pocos minutos.",
            "Después de la última actualización de firmware mi {device} ya no enciende.",
            "La aplicación se cierra en cuanto abro los ajustes en Android.",
            "Me aparece el error {errcode} cuando intento sincronizar mi {device}.",
            "El {device} se calienta mucho y el ventilador hace mucho ruido.",
            "El emparejamiento Bluetooth con mi {device} falla siempre.",
            "La pantalla de mi {device} parpadea desde ayer, ya probé a reiniciarlo.",
        ],
        "shipping": [
            "Mi pedido {order} todavía no ha llegado, debía entregarse hace {days} días.",
            "El número de seguimiento {tracking} no se actualiza desde hace una semana.",
            "¿Puedo cambiar todavía la dirección de entrega del pedido {order}? Es que me mudo.",
            "La empresa de mensajería dice que el paquete fue entregado, pero nunca lo recibí.",
            "¿Envían el {device} a Portugal y cuánto tarda el envío?",
            "Mi paquete está retenido en aduanas, ¿qué tengo que hacer?",
            "Del pedido {order} solo se entregó una de las dos cajas.",
        ],
        "other": [
            "¿Tienen una tienda física en {city}?",
            "Solo quería decir que su equipo de soporte fue muy amable la semana pasada, ¡gracias!",
            "¿Están contratando? Me gustaría enviar mi CV para un puesto en {city}.",
            "Somos un distribuidor interesado en una colaboración, ¿con quién podemos hablar?",
            "¿Cuál es el horario de atención al cliente los fines de semana?",
            "Soy periodista y escribo sobre hogar inteligente, ¿tienen un contacto de prensa?",
            "Una sugerencia: ofrezcan el {device} en más colores.",
        ],
        "vague": [
            "Tengo un problema con mi {device}, ayúdenme por favor.",
            "Por favor, llámenme por el pedido {order} lo antes posible.",
            "Nada funciona como debería y estoy muy frustrado.",
            "Ya les escribí dos veces y nadie me respondió.",
            "Algo va mal con mi pedido {order}.",
            "¿Alguien puede contactarme por lo de mi {device}?",
        ],
        "noise": [
            "Es urgente.",
            "Gracias de antemano.",
            "Soy cliente desde hace años.",
            "Por favor, respondan pronto.",
            "Espero que puedan ayudarme.",
            "Saludos.",
        ],
        "greet": ["Hola,", "Buenos días,", "Buenas tardes,", "Estimado equipo,"],
        "phone": ["Llamada del cliente:", "Nota de llamada:", "El cliente llamó:"],
        "cities": ["Madrid", "Barcelona", "Valencia", "Sevilla", "Bilbao", "Ciudad de México"],
        "currency": ("{} €", ","),
    },
}

SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


def choice(rng: np.random.Generator, items, p=None):
    """One element of ``items`` (a plain Python object, not a numpy scalar)."""
    return items[int(rng.choice(len(items), p=p))]


def n_sentences(text: str) -> int:
    return len(SENTENCE_END.findall(text))


def slot_values(rng: np.random.Generator, lang: str) -> dict[str, str]:
    spec = TEXT[lang]
    fmt, dec = spec["currency"]
    cents = choice(rng, [0, 99, 99, 49, 95, 50])
    euros = int(rng.choice([9, 12, 19, 24, 29, 39, 49, 59, 79, 99, 129, 149, 199, 249, 349, 499]))
    amount = fmt.format(f"{euros}{dec}{cents:02d}")
    if rng.random() < 0.5:
        tracking = "1Z" + "".join(choice(rng, "ABCDEFGHJKLMNPRSTUVWXY0123456789") for _ in range(14))
    else:
        tracking = "JJD" + "".join(str(int(d)) for d in rng.integers(0, 10, 15))
    if rng.random() < 0.7:
        errcode = f"E{int(rng.integers(100, 1000))}"
    else:
        errcode = f"0x{int(rng.integers(0x80000000, 0x80FFFFFF)):08X}"
    return {
        "device": choice(rng, DEVICES),
        "plan": choice(rng, PLANS),
        "order": f"#{int(rng.integers(1_000_000, 10_000_000))}",
        "invoice": f"INV-2026-{int(rng.integers(1, 100_000)):06d}",
        "tracking": tracking,
        "amount": amount,
        "last4": f"{int(rng.integers(0, 10_000)):04d}",
        "days": str(int(rng.integers(3, 21))),
        "errcode": errcode,
        "user": f"{choice(rng, USER_STEMS)}{int(rng.integers(1, 99))}",
        "city": choice(rng, spec["cities"]),
    }


def add_typos(rng: np.random.Generator, text: str) -> str:
    """Swap, drop or double one letter in 1-2 longer words (never in ids or numbers)."""
    words = text.split(" ")
    candidates = [i for i, w in enumerate(words) if len(w) >= 5 and w.isalpha()]
    if not candidates:
        return text
    for i in rng.choice(candidates, size=min(len(candidates), int(rng.integers(1, 3))), replace=False):
        w = words[int(i)]
        j = int(rng.integers(1, len(w) - 2))
        op = int(rng.integers(0, 3))
        if op == 0:
            w = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
        elif op == 1:
            w = w[:j] + w[j + 1 :]
        else:
            w = w[:j] + w[j] + w[j:]
        words[int(i)] = w
    return " ".join(words)


def confusable(rng: np.random.Generator, label: str, table: dict = CONFUSION) -> str:
    others = table[label]
    return choice(rng, list(others), p=list(others.values()))


def make_text(rng: np.random.Generator, lang: str, channel: str, label: str, difficulty: int) -> tuple[str, str | None]:
    """The ticket text, and the second label of a mixed ticket (else None)."""
    spec = TEXT[lang]
    second = None
    if difficulty == CLEAN:
        k = 2 if rng.random() < 0.3 else 1
        idx = rng.choice(len(spec[label]), size=k, replace=False)
        core = [spec[label][int(i)] for i in idx]
    elif difficulty == MIXED:
        second = confusable(rng, label, MIXED_PARTNER)
        core = [choice(rng, spec[label]), choice(rng, spec[second])]
        if rng.random() < 0.4:
            core.reverse()
    else:
        core = [choice(rng, spec["vague"])]
    # Fresh numbers for each sentence, but one device, plan and order per ticket.
    first = slot_values(rng, lang)
    shared = {k: first[k] for k in ("device", "plan", "order")}
    sentences = [s.format(**(first if j == 0 else {**slot_values(rng, lang), **shared})) for j, s in enumerate(core)]
    if sum(map(n_sentences, sentences)) > 3:
        sentences = sentences[:1]
    noise_p = {"email": 0.5, "web": 0.3, "chat": 0.2, "phone": 0.15}[channel]
    if rng.random() < noise_p and sum(map(n_sentences, sentences)) < 3:
        noise = choice(rng, spec["noise"])
        if rng.random() < 0.3:
            sentences.insert(0, noise)
        else:
            sentences.append(noise)
    text = " ".join(sentences)

    if channel == "phone":
        text = f"{choice(rng, spec['phone'])} {text}"
    elif channel == "email" and rng.random() < 0.7:
        text = f"{choice(rng, spec['greet'])} {text}"
    elif channel == "web" and rng.random() < 0.2:
        text = f"{choice(rng, spec['greet'])} {text}"
    elif channel == "chat":
        if rng.random() < 0.3:
            text = f"{choice(rng, spec['greet'])} {text}"
        if rng.random() < 0.3:
            text = text.lower()
        if rng.random() < 0.4 and text[-1] == ".":
            text = text[:-1]
    if rng.random() < 0.12:
        text = add_typos(rng, text)
    return text, second


def make_tickets(rng: np.random.Generator) -> dict[str, list]:
    n = N_TRAIN + N_TEST
    lang = rng.choice(LANGS, size=n, p=LANG_P)
    channel = rng.choice(CHANNELS, size=n, p=CHANNEL_P)
    label = rng.choice(LABELS, size=n, p=LABEL_P)
    difficulty = rng.choice(3, size=n, p=DIFFICULTY_P)
    difficulty[(label == "other") & (difficulty == MIXED)] = CLEAN  # "other" is never mixed
    day = rng.integers(0, N_DAYS, size=n)  # days before END_DATE
    # Arrival time of day: mostly office hours, some around the clock; kept 10 s clear of
    # midnight so that arrival + latency stays on the same date.
    office = np.clip(rng.normal(14 * 3600, 3.5 * 3600, size=n), 0, 86_389)
    anytime = rng.uniform(0, 86_389, size=n)
    seconds = np.where(rng.random(n) < 0.8, office, anytime)
    arrival_us = (seconds * 1e6).astype(np.int64) // 1000 * 1000  # millisecond resolution
    date_days = (np.datetime64(END_DATE, "D") - day).astype("datetime64[D]").astype(np.int64)

    texts, seconds_label = [], []
    for i in range(n):
        t, s = make_text(rng, str(lang[i]), str(channel[i]), str(label[i]), int(difficulty[i]))
        texts.append(t)
        seconds_label.append(s)

    # Ticket ids increase with creation time, with small random gaps (other queues).
    order = np.lexsort((arrival_us, date_days))
    numbers = 10_000 + np.cumsum(rng.integers(1, 4, size=n))
    ticket_num = np.empty(n, dtype=np.int64)
    ticket_num[order] = numbers
    is_test = np.zeros(n, dtype=bool)
    is_test[rng.choice(n, size=N_TEST, replace=False)] = True
    return {
        "ticket_id": [f"T{int(k):06d}" for k in ticket_num],
        "text": texts,
        "channel": [str(c) for c in channel],
        "language": [str(x) for x in lang],
        "date_days": date_days,
        "label": [str(x) for x in label],
        "difficulty": difficulty,
        "second": seconds_label,
        "arrival_us": arrival_us,
        "is_test": is_test,
    }


# --------------------------------------------------------------------------------------
# Replay logs
# --------------------------------------------------------------------------------------

MODELS = {
    "gpt-4o-mini": {
        "accuracy": {"en": 0.89, "de": 0.885, "fr": 0.88, "es": 0.85},
        "variant_p": 0.05,
        "verbose_p": 0.01,
        "invalid_share_of_wrong": 0.0,
        "overhead": 61,
        "chars_per_token": {"en": 4.0, "de": 3.7, "fr": 3.7, "es": 3.8},
        "latency_median": 0.50,
        "latency_sigma": 0.22,
        "per_completion_token_s": 0.012,
        "label_tokens": {"billing": 2, "technical": 1, "account": 1, "shipping": 2, "refund": 2, "other": 1},
    },
    "llama-3.1-8b": {
        "accuracy": {"en": 0.87, "de": 0.70, "fr": 0.70, "es": 0.80},
        "variant_p": 0.03,
        "verbose_p": 0.005,
        "invalid_share_of_wrong": 0.10,
        "overhead": 66,
        "chars_per_token": {"en": 3.9, "de": 3.3, "fr": 3.4, "es": 3.5},
        "latency_median": 0.22,
        "latency_sigma": 0.28,
        "per_completion_token_s": 0.006,
        "label_tokens": {"billing": 2, "technical": 1, "account": 1, "shipping": 2, "refund": 2, "other": 1},
    },
}
# How much harder mixed and vague tickets are than clean ones (absolute drop in P(correct)).
DIFFICULTY_DROP = np.array([0.0, 0.25, 0.45])
INVALID = ["complaint", "unknown", "general", "payment", "delivery", "login", "inquiry", "none"]
VERBOSE = [
    "The category is: {l}",
    "Category: {l}",
    "This ticket should be routed to {l}.",
    "Based on the ticket, the correct category is {l}.",
    "{L}. The customer is asking about {l} matters.",
]
VARIANTS = [
    lambda s: s.capitalize(),
    lambda s: s + ".",
    lambda s: " " + s + "\n",
    lambda s: s.upper(),
    lambda s: s + "\n",
    lambda s: s.capitalize() + ".",
]


def choose_correct(rng: np.random.Generator, spec: dict, langs: list[str], difficulty: np.ndarray) -> np.ndarray:
    """Which rows the model gets right.

    Per language, each row gets a P(correct) that is lower for mixed and vague tickets and
    whose mean equals the target; rows are then ranked by logit(p) + logistic noise and
    exactly round(n * target) of them are marked correct, so that the realised accuracy per
    language equals the target rather than wandering with sampling noise.
    """
    correct = np.zeros(len(langs), dtype=bool)
    langs_arr = np.array(langs)
    for lang, target in spec["accuracy"].items():
        idx = np.flatnonzero(langs_arr == lang)
        drop = DIFFICULTY_DROP[difficulty[idx]]
        p = np.clip(target + drop.mean() - drop, 0.02, 0.995)
        score = np.log(p / (1 - p)) + rng.logistic(size=len(idx))
        k = int(round(len(idx) * target))
        correct[idx[np.argsort(-score, kind="stable")[:k]]] = True
    return correct


def make_log(rng: np.random.Generator, name: str, tickets: dict[str, list]) -> pa.Table:
    spec = MODELS[name]
    n = len(tickets["ticket_id"])
    correct = choose_correct(rng, spec, tickets["language"], tickets["difficulty"])
    outputs, completion = [], []
    for i in range(n):
        true = tickets["label"][i]
        if correct[i]:
            answer = true
        elif spec["invalid_share_of_wrong"] and rng.random() < spec["invalid_share_of_wrong"]:
            answer = choice(rng, INVALID)
            outputs.append(answer)
            completion.append(int(rng.integers(1, 4)))
            continue
        elif tickets["difficulty"][i] == MIXED and rng.random() < 0.8:
            answer = tickets["second"][i]
        elif tickets["difficulty"][i] == VAGUE and true != "other" and rng.random() < 0.5:
            answer = "other"
        else:
            answer = confusable(rng, true)
        tokens = spec["label_tokens"][answer]
        u = rng.random()
        if u < spec["verbose_p"]:
            out = choice(rng, VERBOSE).format(l=answer, L=answer.capitalize())
            tokens = max(5, round(len(out) / 4) + 1)
        elif u < spec["verbose_p"] + spec["variant_p"]:
            out = choice(rng, VARIANTS)(answer)
            tokens = min(4, tokens + 1)
        else:
            out = answer
        outputs.append(out)
        completion.append(tokens)

    completion_tokens = np.array(completion, dtype=np.int64)
    chars = np.array([len(t) for t in tickets["text"]])
    cpt = np.array([spec["chars_per_token"][x] for x in tickets["language"]])
    prompt_tokens = (spec["overhead"] + np.round(chars / cpt) + rng.integers(-1, 2, size=n)).astype(np.int64)
    latency = (
        np.exp(rng.normal(np.log(spec["latency_median"]), spec["latency_sigma"], size=n))
        + spec["per_completion_token_s"] * completion_tokens
        + 0.0005 * prompt_tokens
    )
    latency = np.round(latency, 4)
    logged_us = (
        np.asarray(tickets["date_days"], dtype=np.int64) * 86_400_000_000
        + np.asarray(tickets["arrival_us"], dtype=np.int64)
        + np.round(latency * 1e6).astype(np.int64)
    )
    schema = pa.schema(
        [
            ("ticket_id", pa.string()),
            ("output", pa.string()),
            ("prompt_tokens", pa.int64()),
            ("completion_tokens", pa.int64()),
            ("latency_s", pa.float64()),
            ("logged_at", pa.timestamp("us", tz="UTC")),
        ]
    )
    return pa.table(
        [
            pa.array(tickets["ticket_id"], pa.string()),
            pa.array(outputs, pa.string()),
            pa.array(prompt_tokens, pa.int64()),
            pa.array(completion_tokens, pa.int64()),
            pa.array(latency, pa.float64()),
            pa.array(logged_us, pa.timestamp("us", tz="UTC")),
        ],
        schema=schema,
    )


# --------------------------------------------------------------------------------------


def subset(tickets: dict[str, list], mask: np.ndarray) -> dict[str, list]:
    """Rows where ``mask`` holds, sorted by ticket_id."""
    idx = sorted(np.flatnonzero(mask), key=lambda i: tickets["ticket_id"][i])
    return {k: [v[i] for i in idx] if isinstance(v, list) else np.asarray(v)[idx] for k, v in tickets.items()}


def ticket_table(t: dict[str, list]) -> pa.Table:
    schema = pa.schema(
        [
            ("ticket_id", pa.string()),
            ("text", pa.string()),
            ("channel", pa.string()),
            ("language", pa.string()),
            ("created_at", pa.date32()),
            ("label", pa.string()),
        ]
    )
    return pa.table(
        [
            pa.array(t["ticket_id"], pa.string()),
            pa.array(t["text"], pa.string()),
            pa.array(t["channel"], pa.string()),
            pa.array(t["language"], pa.string()),
            pa.array(np.asarray(t["date_days"], dtype=np.int32), pa.date32()),
            pa.array(t["label"], pa.string()),
        ],
        schema=schema,
    )


def write(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd")
    print(
        f"wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}  "
        f"({table.num_rows} rows, {path.stat().st_size / 1024:.0f} KB)"
    )


def main() -> None:
    data_rng, *model_rngs = (np.random.default_rng(s) for s in np.random.SeedSequence(SEED).spawn(1 + len(MODELS)))
    tickets = make_tickets(data_rng)
    train = subset(tickets, ~tickets["is_test"])
    test = subset(tickets, tickets["is_test"])
    write(ticket_table(train), OUT_DIR / "train.parquet")
    write(ticket_table(test), OUT_DIR / "test.parquet")
    for (name, _), rng in zip(MODELS.items(), model_rngs):
        write(make_log(rng, name, test), OUT_DIR / "logs" / f"{name}.parquet")


if __name__ == "__main__":
    main()
